//! The local Kafka behaves like Aiven's: TLS on localhost:9093 with client
//! certificates required.
use crate::support::common;

use common::{create_topic, kafka_config, produce_raw, read_topic, repo_root, unique};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

#[test]
fn produces_and_consumes_over_ssl_with_the_aiven_files() {
    let topic = unique("stack");
    create_topic(&topic, 1);
    produce_raw(&topic, &[Some(br#"{"Favorite Language": "Rust"}"#.to_vec())]);
    let read = read_topic(&topic);
    assert_eq!(read.len(), 1);
    assert_eq!(
        read[0].payload.as_deref(),
        Some(&br#"{"Favorite Language": "Rust"}"#[..])
    );
    assert_eq!(read[0].offset, 0);
}

/// Asks the broker for metadata and returns the error text, if any.
fn metadata_error(config: &ClientConfig) -> Option<String> {
    let consumer: BaseConsumer = config.create().expect("client");
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .err()
        .map(|e| e.to_string())
}

fn certs(file: &str) -> String {
    repo_root().join("certs").join(file).display().to_string()
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "localhost:9093")
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", certs("ca.pem"))
        .set("group.id", unique("nocert"));
    let err = metadata_error(&c).expect("the broker must refuse a client without a certificate");
    assert!(
        err.contains("BrokerTransportFailure") || err.contains("Timed out") || err.contains("transport"),
        "{err}"
    );

    // The same client with the certificate succeeds: the refusal was the certificate's absence.
    let mut with_cert = c.clone();
    with_cert
        .set("ssl.certificate.location", certs("service.cert"))
        .set("ssl.key.location", certs("service.key"));
    assert_eq!(metadata_error(&with_cert), None);
}

#[test]
fn a_client_trusting_another_ca_is_refused() {
    let cfg = kafka_config();
    let mut c = host::kafka::client_config(&cfg).expect("config");
    c.set("ssl.ca.location", certs("other-ca.pem"))
        .set("group.id", unique("otherca"));
    let err = metadata_error(&c).expect("a client trusting another CA must not accept the broker");
    assert!(
        err.contains("BrokerTransportFailure") || err.contains("Timed out") || err.contains("transport"),
        "{err}"
    );
}

#[test]
fn a_client_presenting_a_certificate_from_another_ca_is_refused() {
    let cfg = kafka_config();
    let mut c = host::kafka::client_config(&cfg).expect("config");
    c.set("ssl.certificate.location", certs("other-client.cert"))
        .set("ssl.key.location", certs("other-client.key"))
        .set("group.id", unique("othercert"));
    let err = metadata_error(&c).expect("the broker must refuse a certificate it did not issue");
    assert!(
        err.contains("BrokerTransportFailure") || err.contains("Timed out") || err.contains("transport"),
        "{err}"
    );
}
