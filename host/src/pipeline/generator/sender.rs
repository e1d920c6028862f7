//! The generator's producing half, on a thread of its own: it hands the
//! messages of one plugin call to librdkafka while the plugin makes the next
//! chunk. Flat out, the WASM call and the `send` per message were one
//! thread's work in turn; with several partitions librdkafka and the broker
//! keep up with more than that thread gave them (issue 23: 0.58 of plain
//! librdkafka at 4 partitions).
//!
//! The channel holds [`AHEAD`] chunks: a full local queue makes this thread
//! wait (`send_waiting`), and the plugin soon after.

use crate::kafka::{self, DeliveryCounter};
use crate::plugins::generator::Message;
use anyhow::bail;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Echo, GeneratorStats};

/// Chunks made and not yet sent.
const AHEAD: usize = 2;

/// How often an idle sending thread reads delivery reports.
const REPORTS_EVERY: Duration = Duration::from_millis(100);

/// Reads the delivery reports that arrived and publishes the counts.
fn report(producer: &BaseProducer<DeliveryCounter>, name: &str, stats: &GeneratorStats) {
    producer.poll(Duration::ZERO);
    stats
        .delivered
        .store(producer.context().delivered.load(Ordering::Relaxed), Ordering::Relaxed);
    crate::ops::metrics::generator_progress(name, producer.context());
}

/// The messages of one plugin call, for one topic.
pub(super) struct Chunk {
    pub topic: String,
    pub messages: Vec<Message>,
}

pub(super) struct Sender {
    tx: Option<SyncSender<Chunk>>,
    thread: JoinHandle<anyhow::Result<BaseProducer<DeliveryCounter>>>,
}

impl Sender {
    /// Starts the thread that owns the producer.
    pub fn start(
        producer: BaseProducer<DeliveryCounter>,
        name: String,
        echo: Echo,
        stats: Arc<GeneratorStats>,
    ) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel::<Chunk>(AHEAD);
        let thread = std::thread::Builder::new()
            .name(format!("produce {name}"))
            .spawn(move || {
                let mut oversized_seen = false;
                loop {
                    // While no chunk comes (a slow schedule, or the last one
                    // sent), delivery reports are still read, so the
                    // delivered count and its metric follow the broker's
                    // acknowledgements instead of waiting for the next chunk.
                    let chunk = match rx.recv_timeout(REPORTS_EVERY) {
                        Ok(chunk) => chunk,
                        Err(RecvTimeoutError::Timeout) => {
                            report(&producer, &name, &stats);
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    for m in &chunk.messages {
                        if !send(&producer, &chunk.topic, m, &name, &mut oversized_seen)? {
                            continue;
                        }
                        if echo == Echo::Print {
                            println!("Sending: {}", String::from_utf8_lossy(&m.payload));
                        }
                    }
                    // Delivery reports, once per chunk rather than per message.
                    report(&producer, &name, &stats);
                }
                Ok(producer)
            })?;
        Ok(Self { tx: Some(tx), thread })
    }

    /// Hands a chunk over, waiting while [`AHEAD`] are queued. False when the
    /// thread stopped on an error ([`Sender::finish`] returns it).
    pub fn send(&self, chunk: Chunk) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(chunk).is_ok())
    }

    /// Waits until every chunk handed over is sent; the producer comes back.
    pub fn finish(mut self) -> anyhow::Result<BaseProducer<DeliveryCounter>> {
        drop(self.tx.take());
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the generator's producing thread panicked"),
        }
    }
}

/// Queues one message, waiting while the local queue is full. False when
/// librdkafka finds it over the maximum size after all (the generator drops
/// those before: [`super::oversized`]); an error for any other refusal.
fn send(
    producer: &BaseProducer<DeliveryCounter>,
    topic: &str,
    m: &Message,
    name: &str,
    reported: &mut bool,
) -> anyhow::Result<bool> {
    let mut record = BaseRecord::to(topic).payload(&m.payload);
    if let Some(key) = &m.key {
        record = record.key(key);
    }
    match kafka::send_waiting(producer, record) {
        Ok(()) => Ok(true),
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
            if !*reported {
                *reported = true;
                tracing::error!(
                    generator = name,
                    topic,
                    payload_bytes = m.payload.len(),
                    "Kafka's client refused a message of the plugin as too large; it is not produced (reported once)"
                );
            }
            Ok(false)
        }
        Err(e) => bail!("generator {name}: cannot produce to {topic:?}: {e}"),
    }
}
