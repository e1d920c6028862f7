//! `host status`: from the running host's /status (exit 0 when ready), and,
//! with no host running, from PostgreSQL and Kafka directly (exit 2).
mod common;
mod ops_support;

use common::{Db, Running, SinkPipeline, host, unique, wait_for};
use ops_support::{count_rows, free_port, wait_for_code};
use std::time::Duration;

#[test]
fn status_reports_the_rows_and_whether_the_host_runs() {
    let topic = unique("status");
    let table = unique("status_rows");
    let port = free_port();
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .generator("gen", 12, 0)
        .extra(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[audit]\ninterval_ms = 0"
        ))
        .write();
    let path = path.to_str().expect("utf-8");
    let running = Running::start(&["run", path, "--no-watch"]);
    let db = Db::connect();
    wait_for("rows stored", Duration::from_secs(120), || {
        count_rows(&db, &table) == 12
    });
    wait_for_code(port, "/health/ready", 200, Duration::from_secs(30));

    let out = host(&["status", path, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["host_running"], true);
    assert_eq!(s["ready"], true);
    assert_eq!(s["sinks"][0]["name"], "rows");
    assert_eq!(s["sinks"][0]["table_rows"], 12);
    let out = host(&["status", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("running, ready"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("rows") && l.contains(&table) && l.contains(" 12 ")),
        "{text}"
    );
    running.terminate();

    let out = host(&["status", path, "--json"]);
    assert_eq!(out.status.code(), Some(2), "no host runs now");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["host_running"], false);
    assert_eq!(s["postgres"]["ok"], true);
    assert_eq!(s["kafka"]["ok"], true);
    assert_eq!(s["sinks"][0]["table_rows"], 12);
    assert_eq!(s["sinks"][0]["partitions"][0]["lag"], 0);
}
