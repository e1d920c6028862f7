//! A generator with `format = "avro"` (or protobuf, json_schema): its plugin
//! still returns JSON; the host encodes each message against the schema file,
//! registers the schema under the subject when the subject lacks it, and
//! produces the registry's wire format (magic byte, schema id, body).

use crate::config::registry::{Format, GeneratorEncoding, RegistryConfig};
use crate::registry::client::{Registry, RegistryError};
use crate::registry::codec::{Compiled, SchemaType};
use crate::registry::wire;
use anyhow::{Context as _, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for an unreachable registry before the generator gives up.
const REGISTER_PATIENCE: Duration = Duration::from_secs(120);

/// The registry's schema type of a format.
pub fn schema_type(format: Format) -> Option<SchemaType> {
    match format {
        Format::Raw => None,
        Format::Avro => Some(SchemaType::Avro),
        Format::Protobuf => Some(SchemaType::Protobuf),
        Format::JsonSchema => Some(SchemaType::Json),
    }
}

/// A generator's compiled schema and its registered id.
pub struct Encoder {
    generator: String,
    subject: String,
    id: u32,
    compiled: Compiled,
}

impl Encoder {
    /// Compiles the schema file and registers it (waiting out an outage,
    /// up to two minutes, or until `stop`). Blocks: call it from the
    /// generator's thread. A refusal names the subject and the reason.
    pub fn prepare(
        generator: &str,
        registry: Option<&RegistryConfig>,
        encoding: &GeneratorEncoding,
        stop: &AtomicBool,
    ) -> anyhow::Result<Encoder> {
        let kind = schema_type(encoding.format).context("a raw generator has no encoder")?;
        let registry = registry.with_context(|| {
            format!(
                "generator {generator}: format = {:?} needs [schema_registry]",
                encoding.format.name()
            )
        })?;
        let compiled = Compiled::parse(kind, &encoding.schema_text, &[])
            .with_context(|| format!("generator {generator}: schema {}", encoding.schema.display()))?;
        let client = Registry::shared(registry)?;
        // The generator's thread is a blocking one of the host's runtime;
        // outside one (the benchmark), a small runtime of its own.
        let own;
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle,
            Err(_) => {
                own = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                own.handle().clone()
            }
        };
        let started = Instant::now();
        let mut backoff = super::retry::Backoff::new(super::retry::FIRST_BACKOFF, super::MAX_BACKOFF);
        let id = loop {
            match runtime.block_on(client.register(&encoding.subject, kind, &encoding.schema_text)) {
                Ok(id) => break id,
                Err(e) if e.is_retryable() && started.elapsed() < REGISTER_PATIENCE => {
                    if stop.load(Ordering::Relaxed) {
                        bail!("generator {generator}: stopped while the schema registry did not answer: {e}");
                    }
                    tracing::warn!(generator, error = %e, "cannot register the schema yet; retrying");
                    std::thread::sleep(backoff.next_pause());
                }
                Err(e @ RegistryError::Incompatible { .. }) => bail!(
                    "generator {generator}: {e}\n  hint: the schema in {} must be compatible with the subject's latest version (a new field needs a default), or register it under another subject (generators.subject)",
                    encoding.schema.display()
                ),
                Err(e) => bail!("generator {generator}: {e}"),
            }
        };
        tracing::info!(
            generator,
            subject = encoding.subject,
            schema_id = id,
            format = encoding.format.name(),
            "schema registered; messages are encoded"
        );
        Ok(Encoder {
            generator: generator.to_string(),
            subject: encoding.subject.clone(),
            id,
            compiled,
        })
    }

    /// The wire format of one message the plugin returned as JSON.
    pub fn encode(&self, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        let value: serde_json::Value = serde_json::from_slice(payload).with_context(|| {
            format!(
                "generator {}: its message is not JSON, so it cannot be encoded for subject {:?}: {}",
                self.generator,
                self.subject,
                String::from_utf8_lossy(&payload[..payload.len().min(80)])
            )
        })?;
        let body = self.compiled.encode(&value).with_context(|| {
            format!(
                "generator {}: its message does not fit the schema of subject {:?} (id {})",
                self.generator, self.subject, self.id
            )
        })?;
        Ok(wire::frame(self.id, &body))
    }
}
