//! The schema registry stand-in (scripts/registry-standin.py, which
//! `scripts/local-stack up` runs on 8081) keeps to the Confluent REST
//! contract the host relies on: TLS with a certificate signed by
//! certs/ca.pem, basic auth, global ids, documented error codes, BACKWARD
//! checks for Avro. A private instance per test, like the sinks' tests use.

use crate::support::common;

use common::registry::Registry;
use common::repo_root;
use std::process::Command;

#[test]
fn it_needs_the_password_and_serves_tls_signed_by_the_stack_ca() {
    let registry = Registry::start();
    let (status, body) = registry.curl("GET", "/subjects", None, false);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"error_code\": 401"), "{body}");
    let (status, body) = registry.curl("GET", "/subjects", None, true);
    assert_eq!((status, body.as_str()), (200, "[]"));

    // Plain HTTP is not served; a client trusting another CA is refused.
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "5", "-u", "avnadmin:localdev"])
        .arg(format!("http://localhost:{}/subjects", registry.port))
        .output()
        .expect("curl");
    assert!(
        !String::from_utf8_lossy(&plain.stdout).starts_with('['),
        "answered over plain HTTP"
    );
    let other = Command::new("curl")
        .args(["-s", "--max-time", "5", "-u", "avnadmin:localdev", "--cacert"])
        .arg(repo_root().join("certs/other-ca.pem"))
        .arg(format!("{}/subjects", registry.url()))
        .status()
        .expect("curl");
    assert_eq!(
        other.code(),
        Some(60),
        "curl verifies the certificate against another CA: exit 60"
    );
}

#[test]
fn it_answers_the_documented_codes_and_keeps_ids_global() {
    let registry = Registry::start();
    let v1 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let id = registry.register("one-value", "AVRO", v1);
    assert_eq!(
        registry.register("two-value", "AVRO", v1),
        id,
        "the same schema keeps its id"
    );
    let error = |method: &str, path: &str, body: Option<&str>| {
        let (status, text) = registry.curl(method, path, body, true);
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON error body");
        (status, v["error_code"].as_u64().unwrap_or(0))
    };
    assert_eq!(error("GET", "/subjects/nope/versions", None), (404, 40401));
    assert_eq!(error("GET", "/subjects/one-value/versions/9", None), (404, 40402));
    assert_eq!(error("GET", "/schemas/ids/999", None), (404, 40403));
    let invalid = serde_json::json!({"schema": "{not json"}).to_string();
    assert_eq!(
        error("POST", "/subjects/one-value/versions", Some(&invalid)),
        (422, 42201)
    );
    // BACKWARD: a new field without a default cannot read old data.
    let breaking = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long"}]}"#;
    let body = serde_json::json!({ "schema": breaking }).to_string();
    assert_eq!(error("POST", "/subjects/one-value/versions", Some(&body)), (409, 409));
    let (_, answer) = registry.curl(
        "POST",
        "/compatibility/subjects/one-value/versions/latest",
        Some(&body),
        true,
    );
    assert!(answer.contains("\"is_compatible\": false"), "{answer}");
    let fine = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","long"],"default":null}]}"#;
    let v2 = registry.register("one-value", "AVRO", fine);
    let (_, latest) = registry.curl("GET", "/subjects/one-value/versions/latest", None, true);
    let latest: serde_json::Value = serde_json::from_str(&latest).expect("JSON");
    assert_eq!(
        (latest["id"].as_u64(), latest["version"].as_u64()),
        (Some(u64::from(v2)), Some(2))
    );
}
