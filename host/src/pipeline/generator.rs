//! A generator: asks its plugin for messages and produces them to Kafka at the
//! configured interval, until its count is reached or the host stops. Runs on
//! a blocking thread of its own, since plugin calls are synchronous.

use crate::config::{GeneratorConfig, KafkaConfig};
use crate::kafka;
use crate::plugins::{GeneratorWorld, Plugin};
use anyhow::{Context as _, bail};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most messages asked of a plugin in one call when producing flat out.
const MAX_CHUNK: u32 = 500;
/// How long to wait for outstanding deliveries when the generator stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest uninterrupted sleep, so a stop request is seen promptly.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Whether produced messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Print,
    Quiet,
}

/// Progress of one generator.
#[derive(Default)]
pub struct GeneratorStats {
    delivered: AtomicU64,
}

impl GeneratorStats {
    /// Messages acknowledged by the broker.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

pub struct GeneratorRun {
    pub kafka: KafkaConfig,
    /// The generator's settings; a reload of the pipeline file sends new ones
    /// (topic, interval, count apply from the next message).
    pub config: watch::Receiver<GeneratorConfig>,
    /// A reloaded plugin, swapped in between two calls.
    pub swaps: mpsc::Receiver<Plugin<GeneratorWorld>>,
    pub stop: Arc<AtomicBool>,
    pub echo: Echo,
    pub stats: Arc<GeneratorStats>,
}

pub fn run(run: GeneratorRun, mut plugin: Plugin<GeneratorWorld>) -> anyhow::Result<()> {
    let GeneratorRun {
        kafka: kafka_cfg,
        config: mut live,
        swaps,
        stop,
        echo,
        stats,
    } = run;
    let mut config = live.borrow_and_update().clone();
    let producer = kafka::producer(&kafka_cfg)?;
    let _live = crate::ops::state::generator_started(&config.name, &config.topic);
    // The schedule: message n is due at `epoch + interval * (n - epoch_count)`.
    let (mut epoch, mut epoch_count) = (Instant::now(), 0u64);
    let mut produced: u64 = 0;

    'outer: loop {
        if live.has_changed().unwrap_or(false) {
            config = live.borrow_and_update().clone();
            (epoch, epoch_count) = (Instant::now(), produced);
            tracing::info!(generator = config.name, topic = config.topic, interval_ms = config.interval.as_millis(), count = ?config.count, "generator settings changed");
        }
        if let Ok(new) = swaps.try_recv() {
            plugin = new;
        }
        let remaining = config.count.map_or(u64::MAX, |c| c.saturating_sub(produced));
        if remaining == 0 || stop.load(Ordering::Relaxed) {
            break;
        }
        let chunk = if config.interval.is_zero() { MAX_CHUNK } else { 1 };
        let chunk = chunk.min(u32::try_from(remaining).unwrap_or(u32::MAX));
        if !config.interval.is_zero() {
            // Keep to the schedule, so slow calls do not add up.
            let behind = u32::try_from(produced - epoch_count).unwrap_or(u32::MAX);
            if !sleep_until(epoch + config.interval * behind, &stop, &live) {
                continue 'outer;
            }
        }
        let messages = plugin
            .next(chunk)
            .with_context(|| format!("generator {} failed", config.name))?;
        if messages.is_empty() {
            tracing::info!(generator = config.name, produced, "the plugin has no more messages");
            break;
        }
        for m in messages {
            let mut record = BaseRecord::to(&config.topic).payload(&m.payload);
            if let Some(key) = &m.key {
                record = record.key(key);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // The local queue is full: let deliveries drain, then try again.
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => bail!("generator {}: cannot produce to {:?}: {e}", config.name, config.topic),
                }
            }
            produced += 1;
            if echo == Echo::Print {
                println!("Sending: {}", String::from_utf8_lossy(&m.payload));
            }
        }
        // Delivery reports, once per chunk rather than per message.
        producer.poll(Duration::ZERO);
        stats
            .delivered
            .store(producer.context().delivered.load(Ordering::Relaxed), Ordering::Relaxed);
        crate::ops::metrics::generator_progress(&config.name, producer.context());
    }

    producer.flush(FLUSH_TIMEOUT).with_context(|| {
        format!(
            "generator {}: Kafka did not acknowledge every message within {FLUSH_TIMEOUT:?}",
            config.name
        )
    })?;
    let ctx = producer.context();
    stats
        .delivered
        .store(ctx.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    crate::ops::metrics::generator_progress(&config.name, ctx);
    if failed > 0 {
        let first = ctx
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        bail!(
            "generator {}: {failed} of {produced} messages were not delivered (first error: {first})",
            config.name
        );
    }
    Ok(())
}

/// Sleeps until `due`; false when asked to stop, or when the settings
/// changed meanwhile (the schedule is then recomputed).
fn sleep_until(due: Instant, stop: &AtomicBool, live: &watch::Receiver<GeneratorConfig>) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) || live.has_changed().unwrap_or(false) {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(SLEEP_SLICE));
    }
}
