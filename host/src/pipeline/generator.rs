//! A generator: asks its plugin for messages and produces them to Kafka at the
//! configured interval, until its count is reached or the host stops. Runs on
//! a blocking thread of its own, since plugin calls are synchronous.
//!
//! A plugin that traps, runs past its deadline or out of memory never stops
//! the generator (nor anything else): the failure is logged with the plugin's
//! stderr, the next call starts a fresh instance, and while it keeps failing
//! the calls are spaced by a capped backoff. Messages of a failed call never
//! reach the host, so nothing is produced twice. Results are held to the
//! contract: more than `max` messages are cut to `max` (so the count is never
//! passed), and a message over Kafka's maximum size is not produced; each is
//! reported once per generator, naming it.
//!
//! The messages of one call are sent by a thread of its own while the
//! plugin makes the next chunk (`sender`).

use super::retry::{Backoff, MAX_BACKOFF};
use crate::config::{GeneratorConfig, KafkaConfig};
use crate::kafka;
use crate::plugins::{GeneratorWorld, Plugin, generator::Message};
use anyhow::{Context as _, bail};
use rdkafka::producer::Producer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod sender;

/// Most messages asked of a plugin in one call when producing flat out.
const MAX_CHUNK: u32 = 500;
/// How long to wait for outstanding deliveries when the generator stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest uninterrupted sleep, so a stop request is seen promptly.
const SLEEP_SLICE: Duration = Duration::from_millis(50);
/// The pause after the second failure in a row (the first is retried at once);
/// it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

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
    plugin_failures: AtomicU64,
}

impl GeneratorStats {
    /// Messages acknowledged by the broker.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Calls that trapped, ran out of time or memory (each followed by a fresh instance).
    pub fn plugin_failures(&self) -> u64 {
        self.plugin_failures.load(Ordering::Relaxed)
    }
}

/// Contract breaches already reported, so each is logged once per generator.
#[derive(Default)]
struct Reported {
    too_many: bool,
    oversized: u64,
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
    /// A counted run's lease: no plugin call while it is not known to be held.
    pub gate: Option<Arc<kafka::LeaseGate>>,
    /// `[schema_registry]`, for a generator with a registry format.
    pub registry: Option<crate::config::registry::RegistryConfig>,
}

pub fn run(run: GeneratorRun, mut plugin: Plugin<GeneratorWorld>) -> anyhow::Result<()> {
    let GeneratorRun {
        kafka: kafka_cfg,
        config: mut live,
        swaps,
        stop,
        echo,
        stats,
        gate,
        registry,
    } = run;
    let mut config = live.borrow_and_update().clone();
    // Registered once; a reload that changes the format or schema applies
    // at the next start.
    let encoder = match &config.encoding {
        Some(encoding) => Some(super::encode::Encoder::prepare(
            &config.name,
            registry.as_ref(),
            encoding,
            &stop,
        )?),
        None => None,
    };
    // With an encoder, the echo shows the JSON the plugin made (printed here),
    // not the wire bytes the sender thread sends.
    let sender_echo = if encoder.is_some() { Echo::Quiet } else { echo };
    let sender = sender::Sender::start(
        kafka::producer(&kafka_cfg)?,
        config.name.clone(),
        sender_echo,
        stats.clone(),
    )?;
    let _live = crate::ops::state::generator_started(&config.name, &config.topic);
    // The schedule: message n is due at `epoch + interval * (n - epoch_count)`.
    let (mut epoch, mut epoch_count) = (Instant::now(), 0u64);
    let mut produced: u64 = 0;

    let mut reported = Reported::default();
    // Consecutive failed calls, and when the next call may be made.
    let new_backoff = || Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    let (mut failures, mut backoff, mut retry_at) = (0u32, new_backoff(), None::<Instant>);

    'outer: loop {
        if live.has_changed().unwrap_or(false) {
            config = live.borrow_and_update().clone();
            (epoch, epoch_count) = (Instant::now(), produced);
            tracing::info!(generator = config.name, topic = %config.topic, interval_ms = config.interval.as_millis(), count = ?config.count, "generator settings changed");
        }
        if let Ok(new) = swaps.try_recv() {
            plugin = new;
            (failures, backoff, retry_at) = (0, new_backoff(), None);
        }
        let remaining = config.count.map_or(u64::MAX, |c| c.saturating_sub(produced));
        if remaining == 0 || stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(at) = retry_at {
            // Backing off a failing plugin; a new plugin, new settings or a
            // stop cut it short.
            while Instant::now() < at && !stop.load(Ordering::Relaxed) && !live.has_changed().unwrap_or(false) {
                if let Ok(new) = swaps.try_recv() {
                    plugin = new;
                    (failures, backoff) = (0, new_backoff());
                    break;
                }
                std::thread::sleep((at - Instant::now()).min(SLEEP_SLICE));
            }
            retry_at = None;
            continue 'outer;
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
        if let Some(gate) = &gate
            && !gate.wait_open(&stop)
        {
            continue 'outer;
        }
        let mut messages = match plugin.next(chunk) {
            Ok(messages) => {
                (failures, backoff) = (0, new_backoff());
                messages
            }
            Err(e) => {
                failures += 1;
                stats.plugin_failures.fetch_add(1, Ordering::Relaxed);
                let wait = if failures == 1 {
                    Duration::ZERO
                } else {
                    backoff.next_pause()
                };
                tracing::error!(
                    generator = config.name,
                    consecutive_failures = failures,
                    retry_in_ms = wait.as_millis(),
                    "{e}; its messages of that call are dropped, a fresh instance takes the next call"
                );
                retry_at = Some(Instant::now() + wait);
                continue 'outer;
            }
        };
        if messages.is_empty() {
            tracing::info!(generator = config.name, produced, "the plugin has no more messages");
            break;
        }
        check_count(&config.name, chunk, &mut messages, &mut reported);
        if let Some(encoder) = &encoder {
            for m in &mut messages {
                let wire = encoder.encode(&m.payload)?;
                let json = std::mem::replace(&mut m.payload, wire);
                if echo == Echo::Print {
                    println!("Sending: {}", String::from_utf8_lossy(&json));
                }
            }
        }
        messages.retain(|m| !oversized(&config.name, &config.topic, m, &mut reported));
        produced += messages.len() as u64;
        let chunk = sender::Chunk {
            topic: config.topic.to_string(),
            messages,
        };
        if !sender.send(chunk) {
            // The producing thread stopped on an error: `finish` returns it.
            break;
        }
    }
    let producer = sender.finish()?;
    if reported.oversized > 1 {
        tracing::warn!(
            generator = config.name,
            skipped = reported.oversized,
            "messages over Kafka's maximum message size were not produced"
        );
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
        bail!(
            "generator {}: {failed} of {produced} messages were not delivered (first error: {})",
            config.name,
            ctx.first_error()
        );
    }
    Ok(())
}

/// Holds `next(max)`'s result to the contract: at most `max` messages (the
/// extra are dropped, so the configured count is never passed).
fn check_count(name: &str, max: u32, messages: &mut Vec<Message>, reported: &mut Reported) {
    if messages.len() <= max as usize {
        return;
    }
    if !reported.too_many {
        reported.too_many = true;
        tracing::error!(
            generator = name,
            "the plugin broke the contract: next({max}) returned {} messages; only the first {max} are produced (reported once)",
            messages.len()
        );
    }
    messages.truncate(max as usize);
}

/// Whether a message is over the producer's maximum size: it is not
/// produced, and the first is reported.
fn oversized(name: &str, topic: &str, m: &Message, reported: &mut Reported) -> bool {
    let key_bytes = m.key.as_ref().map_or(0, Vec::len);
    if !kafka::too_large(key_bytes, m.payload.len()) {
        return false;
    }
    reported.oversized += 1;
    if reported.oversized == 1 {
        tracing::error!(
            generator = name,
            topic,
            payload_bytes = m.payload.len(),
            key_bytes,
            "the plugin returned a message over the producer's maximum message size (message.max.bytes, 1,000,000 by default); it is not produced, nor any other such message of this generator (reported once)"
        );
    }
    true
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
