//! Helpers shared by the audit tests: a pipeline with one json-row sink and
//! the given checks, and `host check ... --json` read back as JSON.

use super::common::{host_ok, host_within, plugin, produce_raw, write_pipeline};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `[[checks]]` entry for a shipped plugin (`sync_audit`, `dead_letter_audit`,
/// `hostile_check`), with extra TOML lines after it (settings, limits).
pub fn check_entry(name: &str, wasm: &str, extra: &str) -> String {
    format!(
        "\n[[checks]]\nname = \"{name}\"\nplugin = \"{}\"\n{extra}\n",
        plugin(wasm).display()
    )
}

/// The body of a pipeline: one topic, one json-row sink into `table`, then `checks`.
pub fn sink_body(topic: &str, table: &str, checks: &str) -> String {
    format!(
        r#"
[audit]
timeout_ms = 5000

[[topics]]
name = "{topic}"

[[sinks]]
name = "audited"
topic = "{topic}"
table = "{table}"
mapper = "{mapper}"
{checks}"#,
        mapper = plugin("json_row").display(),
    )
}

/// Writes a pipeline with one json-row sink and the given checks.
pub fn sink_pipeline(topic: &str, table: &str, checks: &str) -> PathBuf {
    write_pipeline(&sink_body(topic, table, checks))
}

/// Produces `{"n": i}` for each i of `range` to partition 0.
pub fn produce_json(topic: &str, range: std::ops::Range<i64>) {
    let payloads: Vec<Option<Vec<u8>>> = range.map(|i| Some(format!("{{\"n\": {i}}}").into_bytes())).collect();
    produce_raw(topic, &payloads);
}

/// Asserts `text` holds every one of `parts`.
pub fn assert_says(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

/// Runs the pipeline's sinks of `topic` until they have caught up.
pub fn consume_once(path: &Path, topic: &str) {
    host_ok(&[
        "consume",
        path.to_str().expect("utf-8"),
        "--topic",
        topic,
        "--once",
        "--quiet",
    ]);
}

/// Runs `host <args> --json` (at most `limit`) and returns its exit code and report.
pub fn json_report(args: &[&str], limit: Duration) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = host_within(&all, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "host {all:?} did not print JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), report)
}

/// `host check <pipeline> sync --topic <topic> --json`.
pub fn check_sync(path: &Path, topic: &str) -> (i32, Value) {
    json_report(
        &["check", path.to_str().expect("utf-8"), "sync", "--topic", topic],
        Duration::from_secs(60),
    )
}

/// The sync row of `topic/partition` in a report.
pub fn sync_row<'a>(report: &'a Value, topic: &str, partition: i64) -> &'a Value {
    report["sync"]
        .as_array()
        .expect("a sync section")
        .iter()
        .find(|r| r["topic"] == topic && r["partition"] == partition)
        .unwrap_or_else(|| panic!("no sync row for {topic}/{partition} in {report:#}"))
}

/// One field of every finding of a report, e.g. `source` or `message`.
pub fn findings_field<'a>(report: &'a Value, field: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f[field].as_str())
        .collect()
}

/// The findings of a report whose subject is `subject`.
pub fn findings_about<'a>(report: &'a Value, subject: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["subject"] == subject)
        .collect()
}
