//! `host plugin test --registry URL`: mapper input in the schema registry's
//! wire format is decoded to JSON before the mapper sees it, through the
//! decoder a sink with `format = "avro"` uses (pipeline/decode.rs) and the
//! same registry client, and the output shows each schema id and the JSON.

use crate::config::registry::{Format, RegistryConfig, SinkRegistry};
use crate::config::{Secret, SecretSource};
use crate::pipeline::decode::Decoder;
use crate::plugins::mapper::Message;
use crate::registry::client::{Registry, RegistryError};
use anyhow::{Context as _, bail};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// The `[schema_registry]` keys as flags of `host plugin test`.
#[derive(clap::Args, Debug, Default)]
pub struct RegistryArgs {
    /// Mapper: each --input payload is in the schema registry's wire format
    /// (Avro, Protobuf or JSON Schema): fetch its schema by id from this
    /// registry and hand the mapper the value as JSON, as a sink with
    /// `format = "avro"` does. The output shows each schema id and the
    /// decoded JSON; a payload that does not decode is reported as the dead
    /// letter `host run` would make. (schema_registry.url)
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// The registry's user, for basic auth (schema_registry.username).
    #[arg(long, value_name = "USER", requires = "registry")]
    pub registry_user: Option<String>,
    /// The environment variable holding the registry's password
    /// (schema_registry.password_env).
    #[arg(long, value_name = "VAR", requires = "registry_user")]
    pub registry_password_env: Option<String>,
    /// A file holding the registry's password (schema_registry.password_file).
    #[arg(
        long,
        value_name = "PATH",
        requires = "registry_user",
        conflicts_with = "registry_password_env"
    )]
    pub registry_password_file: Option<PathBuf>,
    /// The CA that signed the registry's certificate, added to the system's
    /// (schema_registry.ca).
    #[arg(long, value_name = "PEM", requires = "registry")]
    pub registry_ca: Option<PathBuf>,
    /// The Kafka keys are in the wire format too (a sink's `key_format`).
    #[arg(long, requires = "registry")]
    pub registry_keys: bool,
}

/// What decoding made of one input message.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// Given to the mapper as it is (no --registry, or a tombstone).
    Raw,
    /// Decoded with the writer's schema `id`; `key` when --registry-keys.
    Decoded {
        id: u32,
        value: serde_json::Value,
        key: Option<serde_json::Value>,
    },
    /// Not decodable: `host run` dead-letters it; the mapper is not called.
    Failed(String),
}

/// The messages as the mapper gets them, and what decoding made of each.
pub fn decode(args: &RegistryArgs, messages: Vec<Message>) -> anyhow::Result<(Vec<Message>, Vec<Shown>)> {
    let Some(url) = &args.registry else {
        let shown = vec![Shown::Raw; messages.len()];
        return Ok((messages, shown));
    };
    let config = config(args, url)?;
    let registry = Arc::new(Registry::new(&config).map_err(|e| anyhow::anyhow!("--registry: {e}"))?);
    // The schema's type comes from the registry, so any registry format
    // decodes alike; Avro only says "the wire format".
    let formats = SinkRegistry {
        format: Format::Avro,
        key_format: if args.registry_keys { Format::Avro } else { Format::Raw },
        columns_from: None,
    };
    // The subject named to the mapper: "<topic>-value" when the schema is
    // registered there, as a sink reads it.
    let topic = messages.first().map_or(String::new(), |m| m.topic.clone());
    let decoder = Decoder::new(Some(registry), &formats, &topic).context("no registry format: a bug")?;
    // `host run` waits out an outage; here there is nobody to wait for.
    match block_on(decoder.prefetch(&messages))? {
        Ok(()) => {}
        Err(e @ (RegistryError::Unreachable { .. } | RegistryError::Server { .. })) => {
            bail!("{e}\n  (plugin test does not wait: is --registry {url} right and up?)")
        }
        Err(RegistryError::Refused { url, status, message }) => bail!(
            "schema registry {url} refused the credentials ({status}): {message}\n  hint: check --registry-user and the password --registry-password-env (or --registry-password-file) names"
        ),
        Err(e) => return Err(e.into()),
    }
    let (mut out, mut shown) = (Vec::with_capacity(messages.len()), Vec::with_capacity(messages.len()));
    // One at a time, so each outcome stays beside its input line.
    for m in messages {
        let mut decoded = decoder.decode(vec![m.clone()]);
        if let Some(letter) = decoded.dead_letters.pop() {
            out.push(m);
            shown.push(Shown::Failed(letter.reason));
            continue;
        }
        let (Some(m), Some(schema)) = (decoded.messages.pop(), decoded.schemas.pop()) else {
            bail!("the decoder lost a message: a bug");
        };
        shown.push(match schema {
            Some(schema) => Shown::Decoded {
                id: schema.id,
                value: json(m.payload.as_deref()),
                key: args.registry_keys.then(|| json(m.key.as_deref())),
            },
            None => Shown::Raw,
        });
        out.push(m);
    }
    Ok((out, shown))
}

fn config(args: &RegistryArgs, url: &str) -> anyhow::Result<RegistryConfig> {
    let url = url.trim().trim_end_matches('/');
    if !crate::config::registry::url_allowed(url) {
        bail!(
            "--registry {url:?} must be an https:// URL (plain http only to localhost), as schema_registry.url in pipeline.toml"
        );
    }
    let (password, password_source) = match (&args.registry_password_env, &args.registry_password_file) {
        (Some(var), _) => {
            let value = std::env::var(var)
                .with_context(|| format!("--registry-password-env {var}: the variable is not set (or not UTF-8)"))?;
            (Some(Secret::new(value)), SecretSource::Env(var.clone()))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--registry-password-file {} cannot be read", path.display()))?;
            // As password_file: `echo secret > file` leaves a newline.
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            (Some(Secret::new(value)), SecretSource::File(path.clone()))
        }
        (None, None) => (None, SecretSource::None),
    };
    if args.registry_user.is_some() && password.is_none() {
        bail!("--registry-user needs its password: --registry-password-env VAR or --registry-password-file PATH");
    }
    if args.registry_user.as_deref().is_some_and(|u| u.contains(':')) {
        bail!("--registry-user holds ':', which basic auth cannot carry");
    }
    Ok(RegistryConfig {
        url: url.to_string(),
        username: args.registry_user.clone(),
        password,
        password_source,
        ca: args.registry_ca.clone(),
    })
}

/// Runs a future from `execute`'s thread (a blocking thread of `main`'s
/// runtime), or on a runtime of its own where there is none (unit tests).
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(future)),
        Err(_) => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start an async runtime for the registry")?
            .block_on(future)),
    }
}

/// Decoded bytes as JSON (they are JSON: the decoder wrote them).
fn json(bytes: Option<&[u8]>) -> serde_json::Value {
    bytes
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// A `payload_base64` or `key_base64` field of an input line: the bytes
/// (standard alphabet, padded), or `None` for null.
pub fn base64_field(v: &serde_json::Value, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use base64::Engine as _;
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(Some)
            .with_context(|| format!("{what} is not base64 (the standard alphabet, as `base64 -w0` writes)")),
        other => bail!("{what} must be a base64 string or null: {other}"),
    }
}

/// Adds the schema id and decoded JSON to a message's `--json` outcome.
pub fn annotate(outcome: &mut serde_json::Value, shown: &Shown) {
    if let (Shown::Decoded { id, value, key }, Some(fields)) = (shown, outcome.as_object_mut()) {
        fields.insert("schema_id".into(), (*id).into());
        fields.insert("decoded".into(), value.clone());
        if let Some(key) = key {
            fields.insert("decoded_key".into(), key.clone());
        }
    }
}

/// The text output's section of decoded values, empty without --registry.
pub fn section(offsets: impl Iterator<Item = i64>, shown: &[Shown]) -> String {
    let mut out = String::new();
    for (offset, s) in offsets.zip(shown) {
        if let Shown::Decoded { id, value, key } = s {
            let _ = write!(out, "  offset {offset}: schema id {id}: {value}");
            if let Some(key) = key {
                let _ = write!(out, " (key {key})");
            }
            out.push('\n');
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("decoded (schema registry):\n{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Message {
        Message {
            topic: "test".into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            payload: Some(payload.to_vec()),
            schema: None,
        }
    }

    #[test]
    fn without_registry_messages_pass_as_they_are() {
        let (out, shown) = decode(&RegistryArgs::default(), vec![message(b"x")]).expect("decodes");
        assert_eq!(out[0].payload.as_deref(), Some(&b"x"[..]));
        assert_eq!(shown, [Shown::Raw]);
    }

    #[test]
    fn flags_are_checked_as_the_section_is() {
        let args = RegistryArgs {
            registry: Some("http://registry.example.com".into()),
            ..RegistryArgs::default()
        };
        let e = decode(&args, vec![message(b"x")]).expect_err("plain http to a remote host");
        assert!(e.to_string().contains("https://"), "{e}");
        let args = RegistryArgs {
            registry: Some("http://localhost:1".into()),
            registry_user: Some("avnadmin".into()),
            ..RegistryArgs::default()
        };
        let e = decode(&args, vec![message(b"x")]).expect_err("no password");
        assert!(e.to_string().contains("--registry-password-env"), "{e}");
    }

    #[test]
    fn an_unreachable_registry_is_an_error_not_a_wait() {
        let args = RegistryArgs {
            registry: Some("http://127.0.0.1:1".into()),
            ..RegistryArgs::default()
        };
        let e = decode(&args, vec![message(&[0, 0, 0, 0, 1, 2])]).expect_err("nothing listens on port 1");
        assert!(e.to_string().contains("does not wait"), "{e}");
    }

    #[test]
    fn the_section_lists_decoded_values_only() {
        let shown = [
            Shown::Raw,
            Shown::Decoded {
                id: 7,
                value: serde_json::json!({"a": 1}),
                key: None,
            },
            Shown::Failed("no".into()),
        ];
        let text = section([0, 1, 2].into_iter(), &shown);
        assert_eq!(text, "decoded (schema registry):\n  offset 1: schema id 7: {\"a\":1}\n");
        assert_eq!(section([0].into_iter(), &[Shown::Raw]), "");
    }
}
