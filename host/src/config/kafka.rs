//! `[kafka]`: the brokers and the client certificates.

use super::{ConfigError, Secret, SecretSource, Source, secrets};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityProtocol {
    Ssl,
    Plaintext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub security_protocol: SecurityProtocol,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The passphrase of an encrypted `key` (`key_password_env` or `key_password_file`).
    pub key_password: Option<Secret>,
    pub key_password_source: SecretSource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    bootstrap_servers: Spanned<String>,
    #[serde(default = "default_protocol")]
    security_protocol: Spanned<String>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    key_password_env: Option<Spanned<String>>,
    key_password_file: Option<Spanned<String>>,
}

fn default_protocol() -> Spanned<String> {
    Spanned::new(0..0, "ssl".to_string())
}

pub(super) fn check_kafka(src: &Source<'_>, raw: RawKafka) -> Result<KafkaConfig, ConfigError> {
    if raw.bootstrap_servers.get_ref().trim().is_empty() {
        return Err(src.error(
            raw.bootstrap_servers.span(),
            "kafka.bootstrap_servers is empty; set it to host:port, e.g. \"localhost:9093\"",
        ));
    }
    let security_protocol = match raw.security_protocol.get_ref().to_ascii_lowercase().as_str() {
        "ssl" => SecurityProtocol::Ssl,
        "plaintext" => SecurityProtocol::Plaintext,
        other => {
            return Err(src.error(
                raw.security_protocol.span(),
                format!("kafka.security_protocol {other:?} is not supported; use \"ssl\" (Aiven, client certificates) or \"plaintext\""),
            ));
        }
    };
    let file = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<PathBuf>, ConfigError> {
        match v {
            None if security_protocol == SecurityProtocol::Ssl => Err(src.error(
                raw.bootstrap_servers.span(),
                format!("kafka.{key} is required with security_protocol = \"ssl\"; set it to the file downloaded from Aiven (e.g. \"certs/{}\")", match key {
                    "ca" => "ca.pem",
                    "cert" => "service.cert",
                    _ => "service.key",
                }),
            )),
            None => Ok(None),
            Some(p) => Ok(Some(src.resolve(p.get_ref()))),
        }
    };
    let key_password = secrets::SecretKeys {
        key: "kafka.key_password",
        what: "the passphrase of the encrypted kafka.key",
        inline: None,
        env: raw.key_password_env.as_ref(),
        file: raw.key_password_file.as_ref(),
    }
    .read(src)?;
    let (key_password, key_password_source) = match key_password {
        Some((value, source)) => (Some(Secret::new(value)), source),
        None => (None, SecretSource::None),
    };
    Ok(KafkaConfig {
        ca: file(&raw.ca, "ca")?,
        cert: file(&raw.cert, "cert")?,
        key: file(&raw.key, "key")?,
        key_password,
        key_password_source,
        bootstrap_servers: raw.bootstrap_servers.into_inner(),
        security_protocol,
    })
}
