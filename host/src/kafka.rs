//! Kafka, through rdkafka: client settings (TLS with client certificates, as
//! Aiven serves Kafka), the idempotent producer, the sink consumer whose
//! partition assignments start at offsets read from PostgreSQL, and the admin
//! calls the host needs.

use crate::config::{KafkaConfig, SecurityProtocol};
use anyhow::{Context as _, bail};
use rdkafka::config::ClientConfig;
use std::time::Duration;

mod admin;
mod lease;
mod produce;
mod sink;
mod start;
pub mod stdin;
mod tls_watch;
pub use admin::{
    ClusterInfo, GroupPartition, OutsideCommitError, PartitionInfo, TopicStatus, cluster_info, commit_outside_group,
    create_topics, end_offsets, group_offsets, partitions, query_consumer, watermarks,
};
pub use lease::{LeaseGate, RunLease, claim_as as claim_counted_run_as, claim_counted_run};
pub use produce::{DeliveryCounter, MAX_MESSAGE_BYTES, producer, send_waiting, too_large};
pub use sink::{
    OffsetLoader, SinkContext, StoredOffsets, commit_advisory, fenced, is_offset_out_of_range,
    permanent_consumer_error, reposition, sink_consumer,
};
pub use start::{offsets_for_time, resolve_starts};
pub use tls_watch::{TlsWatch, diagnose_tls};

/// How long metadata and watermark requests may take.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// A sink's consumer session: how long a stopped or hung process keeps its
/// partitions (a static member sends no LeaveGroup when it stops).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Client settings shared by producers, consumers and admin clients.
pub fn client_config(cfg: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    // rdkafka derives the level from the `log` crate, which nothing here sets
    // up: without this, librdkafka says nothing (not even a refused certificate).
    c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    match cfg.security_protocol {
        SecurityProtocol::Plaintext => {
            c.set("security.protocol", "plaintext");
        }
        SecurityProtocol::Ssl => {
            c.set("security.protocol", "ssl");
            for (key, path, what) in [
                ("ssl.ca.location", &cfg.ca, "kafka.ca (the project CA, ca.pem)"),
                (
                    "ssl.certificate.location",
                    &cfg.cert,
                    "kafka.cert (the access certificate, service.cert)",
                ),
                ("ssl.key.location", &cfg.key, "kafka.key (the access key, service.key)"),
            ] {
                let path = path.as_ref().with_context(|| format!("{what} is not set"))?;
                if !path.is_file() {
                    bail!("{what} {}", crate::config::missing_file_hint(path));
                }
                c.set(key, path.to_string_lossy());
            }
            if let Some(password) = &cfg.key_password {
                // librdkafka marks it sensitive: never in its logs.
                c.set("ssl.key.password", password.expose());
            }
        }
    }
    Ok(c)
}
