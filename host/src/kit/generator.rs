//! `host plugin test` of a generator: the calls, as `host run` makes them.

use crate::plugins::trap_text::plural;
use crate::plugins::{GeneratorWorld, Plugin};
use std::fmt::Write as _;
use std::time::Instant;

/// Most messages asked of a generator in one call, as `host run` does.
const GENERATOR_CHUNK: u32 = 500;

/// How `test` calls a generator.
#[derive(Clone, Copy)]
pub(super) enum Calls {
    /// This many messages, in calls of at most [`GENERATOR_CHUNK`].
    Chunked(u64),
    /// `calls` calls of `next(count)`.
    Each { calls: u64, count: u32 },
}

/// The messages the calls made, and the error of the call that failed (the last made).
pub(super) fn run_generator(
    mut plugin: Plugin<GeneratorWorld>,
    calls: Calls,
    json: bool,
) -> (String, Option<anyhow::Error>) {
    let mut out = String::new();
    let (mut produced, mut made, started) = (0u64, 0u64, Instant::now());
    loop {
        let max = match calls {
            Calls::Chunked(count) if produced < count => {
                GENERATOR_CHUNK.min(u32::try_from(count - produced).unwrap_or(u32::MAX))
            }
            Calls::Each { calls, count } if made < calls => count,
            _ => break,
        };
        made += 1;
        let mut messages = match plugin.next(max) {
            Ok(messages) => messages,
            Err(e) => {
                let error = anyhow::anyhow!(
                    "call {made} (next({max})) failed after {}: {e}\n  (`host run` drops that call's messages, logs the error and makes the next call on a fresh instance, whose state starts over)",
                    plural(produced, "message", "messages")
                );
                return (out, Some(error));
            }
        };
        if messages.is_empty() {
            eprintln!("the generator has no more messages after {produced} (call {made} returned none)");
            break;
        }
        if messages.len() > max as usize {
            eprintln!(
                "warning: contract broken: call {made}: next({max}) returned {} messages; `host run` produces only the first {max}",
                messages.len()
            );
            messages.truncate(max as usize);
        }
        for m in messages {
            if m.payload.len() + m.key.as_ref().map_or(0, Vec::len) > 1_000_000 {
                eprintln!(
                    "warning: a message of {} bytes is over Kafka's default maximum message size (1,000,000 bytes); `host run` does not produce it",
                    m.payload.len()
                );
            }
            if json {
                let line = serde_json::json!({
                    "key": m.key.as_deref().map(bytes_json),
                    "payload": bytes_json(&m.payload),
                });
                let _ = writeln!(out, "{line}");
            } else {
                match &m.key {
                    Some(key) => {
                        let _ = writeln!(
                            out,
                            "key={} {}",
                            String::from_utf8_lossy(key),
                            String::from_utf8_lossy(&m.payload)
                        );
                    }
                    None => {
                        let _ = writeln!(out, "{}", String::from_utf8_lossy(&m.payload));
                    }
                }
            }
            produced += 1;
        }
    }
    eprintln!(
        "{} in {}, {} ms",
        plural(produced, "message", "messages"),
        plural(made, "call", "calls"),
        started.elapsed().as_millis()
    );
    (out, None)
}

/// A payload as JSON: a string when it is UTF-8, the bytes otherwise.
fn bytes_json(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::from(bytes.to_vec()),
    }
}
