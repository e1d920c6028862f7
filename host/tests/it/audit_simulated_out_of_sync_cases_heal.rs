//! The old demo's two out-of-sync cases, made by `host simulate`: `host check
//! sync` reports the exact offsets and difference, and a run heals them, since
//! the sink resumes from the offset stored in PostgreSQL: every offset lands
//! exactly once, and Kafka's committed offset catches up.
//!
//! A host that stops leaves its group, so `simulate` rarely waits; when it
//! does (a killed host), it is for the session timeout, 10 s.
use crate::support::{audit, common};

use audit::{
    assert_says, check_entry, check_sync, consume_once, findings_about, produce_json, sink_pipeline, sync_row,
};
use common::{Db, assert_each_offset_once, create_topic, host, host_ok, host_within, unique};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A topic with 10 messages stored by a sink, in sync; returns its pipeline.
fn stored_and_in_sync(topic: &str, table: &str) -> std::path::PathBuf {
    create_topic(topic, 1);
    produce_json(topic, 0..10);
    let path = sink_pipeline(topic, table, &check_entry("sync-audit", "sync_audit", ""));
    let p = path.to_str().expect("utf-8");

    let refused = host(&["simulate", p, "db-ahead", "--topic", topic]);
    assert!(
        !refused.status.success(),
        "simulate before anything is stored must refuse"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("nothing is stored yet"), "{stderr}");

    consume_once(&path, topic);
    let (code, report) = check_sync(&path, topic);
    assert_eq!(code, 0, "{report:#}");
    assert_offsets(sync_row(&report, topic, 0), 10, Some(10), Some(10));
    path
}

fn simulate(path: &Path, case: &str, topic: &str) -> String {
    // Up to the session timeout of the stopped host's static membership, and some.
    let out = host_within(
        &["simulate", path.to_str().expect("utf-8"), case, "--topic", topic],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "simulate {case} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_offsets(row: &Value, end: i64, committed: Option<i64>, stored: Option<i64>) {
    assert_eq!(row["end_offset"], end, "{row:#}");
    assert_eq!(row["committed_offset"], serde_json::json!(committed), "{row:#}");
    assert_eq!(row["stored_offset"], serde_json::json!(stored), "{row:#}");
}

/// Asserts `host check sync` reports `topic/0` out of sync: 10 stored and
/// produced, `committed` in Kafka. Returns sync-audit's message about it.
fn out_of_sync(path: &Path, topic: &str, committed: i64, verdict: &str) -> String {
    let (code, report) = check_sync(path, topic);
    assert_eq!(code, 1, "{report:#}");
    let row = sync_row(&report, topic, 0);
    assert_offsets(row, 10, Some(committed), Some(10));
    assert_eq!(row["difference"], 10 - committed, "{row:#}");
    assert_eq!(row["lag"], 0, "{row:#}");
    assert_eq!(row["verdict"], verdict, "{row:#}");
    assert_eq!(row["in_sync"], false, "{row:#}");
    let about = findings_about(&report, &format!("{topic}/0"));
    assert_eq!(about.len(), 1, "{report:#}");
    assert_eq!(about[0]["severity"], "error", "{report:#}");
    assert_eq!(about[0]["source"], "check sync-audit", "{report:#}");
    about[0]["message"].as_str().expect("message").to_string()
}

fn assert_healed(path: &Path, topic: &str, table: &str, count: i64) {
    assert_each_offset_once(&Db::connect().offsets(table), 0, count);
    let (code, report) = check_sync(path, topic);
    assert_eq!(code, 0, "{report:#}");
    let row = sync_row(&report, topic, 0);
    assert_offsets(row, count, Some(count), Some(count));
    // sync-audit's verdict, as the check plugin words it.
    assert_eq!(row["verdict"], format!("in sync at offset {count}"), "{row:#}");
    assert_eq!(row["in_sync"], true, "{row:#}");
}

#[test]
fn database_ahead_is_reported_then_healed_by_a_run() {
    let (topic, table) = (unique("dbahead"), unique("dbahead_rows"));
    let path = stored_and_in_sync(&topic, &table);

    let done = simulate(&path, "db-ahead", &topic);
    let undo = format!("simulate {} kafka-ahead --topic {topic}", path.display());
    assert_says(
        &done,
        &[
            "moved 10 -> 9 (PostgreSQL holds 10): database ahead by 1",
            "saved in the database but not committed to Kafka",
            &undo,
        ],
    );

    let message = out_of_sync(&path, &topic, 9, "database ahead by 1");
    assert!(
        message.starts_with("database ahead by 1: PostgreSQL holds 10"),
        "{message}"
    );
    assert_says(&message, &["committed offset of group wasm-stream-", " is 9 "]);

    // Were the sink to trust Kafka, it would store offset 9 twice.
    produce_json(&topic, 10..15);
    consume_once(&path, &topic);
    assert_healed(&path, &topic, &table, 15);
}

#[test]
fn kafka_ahead_is_reported_undone_and_healed_by_a_run() {
    let (topic, table) = (unique("kafkaahead"), unique("kafkaahead_rows"));
    let path = stored_and_in_sync(&topic, &table);

    let done = simulate(&path, "kafka-ahead", &topic);
    assert_says(
        &done,
        &[
            "moved 10 -> 11 (PostgreSQL holds 10): Kafka ahead by 1",
            "committed to Kafka but not saved in the database",
        ],
    );

    let message = out_of_sync(&path, &topic, 11, "Kafka ahead by 1");
    assert!(message.starts_with("Kafka ahead by 1: "), "{message}");
    assert!(message.contains(" is 11, PostgreSQL holds 10"), "{message}");

    // The other case undoes it, as in the old demo; then once more.
    let undone = simulate(&path, "db-ahead", &topic);
    assert!(undone.contains("moved 11 -> 10"), "{undone}");
    assert!(undone.contains("agree again"), "{undone}");
    let (code, report) = check_sync(&path, &topic);
    assert_eq!(code, 0, "{report:#}");
    assert_offsets(sync_row(&report, &topic, 0), 10, Some(10), Some(10));
    simulate(&path, "kafka-ahead", &topic);

    // Were the sink to trust Kafka, it would skip offset 10.
    produce_json(&topic, 10..15);
    host_ok(&["run", path.to_str().expect("utf-8"), "--once"]);
    assert_healed(&path, &topic, &table, 15);
}
