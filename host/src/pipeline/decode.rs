//! Before the mapper: a sink with a registry format (`format = "avro"`,
//! `key_format = ...`) reads each value (and key) in the registry's wire
//! format, fetches the writer's schema by id (cached per process) and hands
//! the mapper the value as JSON. So json-row and json-columns work unchanged
//! on Avro, Protobuf and JSON Schema topics.
//!
//! A registry that does not answer is waited for (the caller retries, as
//! for PostgreSQL): never a dead letter. A value not in the wire format, an
//! id the registry does not know, or a value that does not decode is a dead
//! letter naming the offset and why; its neighbours go on.

use super::batch::Mapped;
use crate::config::registry::{Format, SinkRegistry};
use crate::plugins::mapper::Message;
use crate::postgres::DeadLetter;
use crate::registry::client::{Registry, RegistryError};
use crate::registry::wire;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

/// The schema a message was decoded with, kept beside it (contract 0.3.0's
/// `schema-info`: the lead wires it into the WIT message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaInfo {
    pub id: u32,
    pub subject: Option<String>,
}

/// A sink's decoder: its formats and the process's registry client.
pub struct Decoder {
    registry: Arc<Registry>,
    value: Format,
    key: Format,
    /// The subject the sink reads values under: its `subject`, else
    /// `<topic>-value` (the topic-name strategy), for the mapper's
    /// `schema-info`.
    subject: String,
    /// The value schema ids this sink has decoded with.
    seen: Mutex<HashSet<u32>>,
}

/// A batch after decoding.
pub struct Decoded {
    /// The messages that decoded, payload (and key) now JSON, in order.
    pub messages: Vec<Message>,
    /// The value's schema of each of `messages`.
    pub schemas: Vec<Option<SchemaInfo>>,
    /// The messages that did not, as dead letters with the original bytes.
    pub dead_letters: Vec<DeadLetter>,
    /// A value came with a schema id the sink had not decoded with before
    /// (a new version, maybe with new columns).
    pub new_ids: bool,
}

impl Decoder {
    /// `None` for a sink whose value and key are raw.
    pub fn new(registry: Option<Arc<Registry>>, formats: &SinkRegistry, topic: &str) -> Option<Self> {
        if !formats.format.is_registry() && !formats.key_format.is_registry() {
            return None;
        }
        Some(Decoder {
            registry: registry?,
            value: formats.format,
            key: formats.key_format,
            subject: formats.columns_from.clone().unwrap_or_else(|| format!("{topic}-value")),
            seen: Mutex::new(HashSet::new()),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Fetches every schema id of the batch the cache lacks. Fails only
    /// with a retryable error (the registry down): the caller waits and
    /// calls again; unknown ids are cached as such and dead-letter later.
    pub async fn prefetch(&self, messages: &[Message]) -> Result<(), RegistryError> {
        let mut missing = BTreeSet::new();
        for m in messages {
            for (format, bytes) in [(self.value, &m.payload), (self.key, &m.key)] {
                if let (true, Some(bytes)) = (format.is_registry(), bytes)
                    && let Ok((id, _)) = wire::split(bytes)
                    && self.registry.cached(id).is_none()
                {
                    missing.insert(id);
                }
            }
        }
        for id in missing {
            match self.registry.schema(id).await {
                Err(e) if e.is_retryable() || matches!(e, RegistryError::Refused { .. }) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Decodes a batch whose schemas are fetched ([`Decoder::prefetch`]):
    /// pure CPU work, run on a blocking thread by the caller.
    pub fn decode(&self, messages: Vec<Message>) -> Decoded {
        let mut out = Decoded {
            messages: Vec::with_capacity(messages.len()),
            schemas: Vec::with_capacity(messages.len()),
            dead_letters: Vec::new(),
            new_ids: false,
        };
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for mut m in messages {
            let value = match (self.value.is_registry(), m.payload.as_deref()) {
                // A tombstone stays one: the mapper decides (a delete).
                (true, Some(bytes)) => Some(self.one(bytes, "value")),
                _ => None,
            };
            let key = match (self.key.is_registry(), m.key.as_deref()) {
                (true, Some(bytes)) => Some(self.one(bytes, "key")),
                _ => None,
            };
            let failed = [&value, &key]
                .into_iter()
                .flatten()
                .find_map(|r| r.as_ref().err().cloned());
            if let Some(why) = failed {
                out.dead_letters.push(DeadLetter {
                    partition: m.partition,
                    offset: m.offset,
                    key: m.key,
                    payload: m.payload,
                    reason: format!("offset {} of partition {}: {why}", m.offset, m.partition),
                });
                continue;
            }
            let mut schema = None;
            if let Some(Ok((json, id, subject))) = value {
                m.payload = Some(json);
                out.new_ids |= seen.insert(id);
                schema = Some(SchemaInfo {
                    id,
                    subject: subject.clone(),
                });
                // The mapper sees which schema wrote the value (contract 0.3.0).
                m.schema = Some(crate::plugins::mapper::SchemaInfo { id, subject });
            }
            if let Some(Ok((json, ..))) = key {
                m.key = Some(json);
            }
            out.messages.push(m);
            out.schemas.push(schema);
        }
        out
    }

    /// One value or key as JSON bytes, its schema id and subject, or why not.
    fn one(&self, bytes: &[u8], part: &str) -> Result<(Vec<u8>, u32, Option<String>), String> {
        let (id, rest) =
            wire::split(bytes).map_err(|e| format!("the {part} is not in the schema registry's wire format: {e}"))?;
        let schema = match self.registry.cached(id) {
            Some(Ok(schema)) => schema,
            Some(Err(e)) => return Err(format!("the {part}'s schema id {id}: {e}")),
            // Not prefetched: the caller broke the order; say so rather than guess.
            None => return Err(format!("the {part}'s schema id {id} was not fetched")),
        };
        let value = schema
            .compiled
            .decode(rest)
            .map_err(|e| format!("the {part} does not decode with schema id {id}: {e}"))?;
        let json = serde_json::to_vec(&value)
            .map_err(|e| format!("the {part} decoded to JSON that cannot be written: {e}"))?;
        Ok((json, id, schema.subject(&self.subject).map(str::to_string)))
    }
}

/// Adds a batch's decoding dead letters to its mapped form: their offsets
/// move on with the batch, in the same transaction.
pub fn add_dead_letters(mapped: &mut Mapped, letters: Vec<DeadLetter>) {
    for letter in letters {
        mapped.positions.push((letter.partition, letter.offset));
        mapped.sources.push((None, None));
        mapped.dead_letters.push(letter);
    }
}

/// Decodes a batch, waiting out a registry outage with a pause that doubles
/// up to [`super::MAX_BACKOFF`]. `None` when the sink is asked to stop
/// while it waits (nothing of the batch is written; it is consumed again).
/// A refused password ends the sink: waiting cannot cure it.
pub async fn decode_waiting(
    decoder: Option<&Arc<Decoder>>,
    messages: Vec<Message>,
    sink: &str,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Decoded>> {
    let Some(decoder) = decoder else {
        return Ok(Some(Decoded {
            schemas: vec![None; messages.len()],
            messages,
            dead_letters: Vec::new(),
            new_ids: false,
        }));
    };
    let mut backoff = super::retry::Backoff::new(super::retry::FIRST_BACKOFF, super::MAX_BACKOFF);
    let mut waiting_since = None;
    loop {
        match decoder.prefetch(&messages).await {
            Ok(()) => break,
            Err(e @ RegistryError::Refused { .. }) => anyhow::bail!("sink {sink}: {e}"),
            Err(e) => {
                let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
                // /health/ready and /status say so while it lasts.
                crate::ops::state::problem(
                    &format!("sink {sink} (schema registry)"),
                    Some(format!("schema registry unreachable: {e}")),
                );
                let pause = backoff.next_pause();
                tracing::warn!(
                    sink,
                    error = %e,
                    waiting_s = since.elapsed().as_secs(),
                    retry_in_ms = pause.as_millis() as u64,
                    "the schema registry does not answer; the batch waits (no dead letters)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    crate::ops::state::problem(&format!("sink {sink} (schema registry)"), None);
                    return Ok(None);
                }
            }
        }
    }
    if let Some(since) = waiting_since {
        crate::ops::state::problem(&format!("sink {sink} (schema registry)"), None);
        tracing::info!(
            sink,
            waited_ms = since.elapsed().as_millis() as u64,
            "the schema registry answers again"
        );
    }
    let decoder = decoder.clone();
    let decoded = tokio::task::spawn_blocking(move || decoder.decode(messages))
        .await
        .map_err(|e| anyhow::anyhow!("sink {sink}: the decoding thread failed: {e}"))?;
    Ok(Some(decoded))
}
