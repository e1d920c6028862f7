//! Certificate refusals: librdkafka reports them only in its log, so a
//! client context watches it and the error can name the TLS settings.

use super::client_config;
use crate::config::{KafkaConfig, SecurityProtocol};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::sync::Mutex;
use std::time::Duration;

/// What to check when Kafka and this client disagree on certificates.
pub(super) const TLS_HINT: &str = "hint: check kafka.ca (the CA that signed the broker's certificate; Aiven's ca.pem), kafka.cert and kafka.key (the access certificate and key the broker trusts; Aiven's service.cert and service.key)";

/// Passes librdkafka's log to `tracing` (debug and trace: its errors repeat
/// during every outage) and keeps the first certificate refusal, so a caller
/// can end naming the setting instead of retrying a handshake that cannot work.
pub(super) fn watch_log(
    refusal: &Mutex<Option<String>>,
    level: rdkafka::config::RDKafkaLogLevel,
    fac: &str,
    message: &str,
) {
    use rdkafka::config::RDKafkaLogLevel as L;
    if message.contains("SSL")
        && ["certificate", "unknown ca", "alert"]
            .iter()
            .any(|w| message.contains(w))
    {
        let mut refusal = refusal.lock().unwrap_or_else(|p| p.into_inner());
        refusal.get_or_insert_with(|| message.to_string());
    }
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
            tracing::debug!(facility = fac, "librdkafka: {message}")
        }
        _ => tracing::trace!(facility = fac, "librdkafka: {message}"),
    }
}

/// A client context that only watches for certificate refusals (admin
/// clients, queries).
#[derive(Default)]
pub struct TlsWatch {
    refusal: Mutex<Option<String>>,
}

impl TlsWatch {
    /// An error naming the TLS settings, when a handshake failed over a certificate.
    pub fn refused(&self) -> Option<anyhow::Error> {
        let refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some(anyhow::anyhow!(
            "the TLS handshake with Kafka failed: {refusal}\n  {TLS_HINT}"
        ))
    }
}

/// After a request to Kafka failed: whether the certificates are why.
/// Connects once more with a client that reads librdkafka's log (a few
/// seconds at most); `None` when the handshake is not the problem.
pub fn diagnose_tls(cfg: &KafkaConfig) -> Option<anyhow::Error> {
    if cfg.security_protocol != SecurityProtocol::Ssl {
        return None;
    }
    let consumer: BaseConsumer<TlsWatch> = client_config(cfg)
        .ok()?
        .set("group.id", "wasm-stream-tls-probe")
        .create_with_context(TlsWatch::default())
        .ok()?;
    let _ = consumer.fetch_metadata(None, Duration::from_secs(3));
    // The log arrives through the consumer's queue.
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    consumer.context().refused()
}

impl ConsumerContext for TlsWatch {}

impl ClientContext for TlsWatch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        watch_log(&self.refusal, level, fac, message);
    }
}
