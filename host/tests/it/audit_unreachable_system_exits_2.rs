//! `host check` exits 2, quickly, when Kafka or PostgreSQL cannot be reached,
//! says which, and does not let the check plugins judge a partial snapshot.
use crate::support::{audit, common};

use audit::{check_entry, findings_field, json_report, sink_body};
use common::{connection_sections, host_within, unique};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A pipeline whose connection sections are edited by `edit`.
fn pipeline_with(edit: impl Fn(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("unreachable"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("pipeline.toml");
    let topic = unique("unreachable");
    let body = sink_body(&topic, &topic, &check_entry("sync-audit", "sync_audit", ""))
        .replace("timeout_ms = 5000", "timeout_ms = 1500");
    std::fs::write(&path, format!("{}\n{body}", edit(connection_sections()))).expect("write pipeline");
    path
}

#[test]
fn kafka_on_a_closed_port_exits_2_naming_kafka() {
    let path = pipeline_with(|s| s.replace("localhost:9093", "127.0.0.1:1"));
    let p = path.to_str().expect("utf-8");
    let started = Instant::now();
    let (code, report) = json_report(&["check", p, "sync"], Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["unreachable"], serde_json::json!(["kafka"]));
    let first = &report["findings"][0];
    assert_eq!(first["subject"], "kafka");
    assert_eq!(first["severity"], "error");
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot reach Kafka at 127.0.0.1:1 within 1500 ms")),
        "{first:#}"
    );
    let notes = findings_field(&report, "message");
    assert!(
        notes.contains(&"the check plugins did not run: the snapshot is incomplete"),
        "{report:#}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("check sync against a closed Kafka port took {took:?}");

    let out = host_within(&["check", p, "kafka"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT reachable"), "{text}");
    assert!(text.contains("a system could not be reached (exit 2)"), "{text}");
}

#[test]
fn postgres_on_a_closed_port_exits_2_naming_postgres() {
    let path = pipeline_with(|s| s.replace("localhost:5432", "127.0.0.1:1"));
    let started = Instant::now();
    let (code, report) = json_report(&["check", path.to_str().expect("utf-8"), "db"], Duration::from_secs(30));
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["unreachable"], serde_json::json!(["postgres"]));
    assert_eq!(report["db"]["reachable"], false);
    let first = &report["findings"][0];
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot reach PostgreSQL at 127.0.0.1:1/info")),
        "{first:#}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_pipeline_that_does_not_load_exits_2() {
    let path = pipeline_with(|s| s.replace("[kafka]", "[kafka]\ntypo = 1"));
    let out = host_within(&["check", path.to_str().expect("utf-8")], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `typo`"), "{stderr}");
}
