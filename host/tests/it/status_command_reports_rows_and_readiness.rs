//! `host status`: from the running host's /status (exit 0 when ready), and,
//! with no host running, from PostgreSQL and Kafka directly (exit 2).
use crate::support::{common, ops};

use common::{Db, Running, SinkPipeline, host, unique, wait_for};
use ops::{count_rows, free_port, wait_for_code};
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
    assert_eq!(s["sinks"][0]["table_rows_kind"], "exact", "a small table is counted");
    let out = host(&["status", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("running, ready"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("rows") && l.contains(&table) && l.contains(" 12 ")),
        "{text}"
    );
    // The generator's count is done: not running, and what it produced.
    wait_for("the generator finished", Duration::from_secs(30), || {
        let out = host(&["status", path, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| s["generators"][0]["running"] == false)
    });
    let out = host(&["status", path, "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["generators"][0]["produced"], 12, "{s:#}");
    let text = String::from_utf8_lossy(&host(&["status", path]).stdout).into_owned();
    assert!(text.contains("not running; produced 12 in its last run"), "{text}");
    running.terminate();

    let out = host(&["status", path, "--json"]);
    assert_eq!(out.status.code(), Some(2), "no host runs now");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(s["host_running"], false);
    // No host runs it: what it produced is not known here (not `produced 0`).
    assert_eq!(s["generators"][0]["running"], false);
    assert!(s["generators"][0]["produced"].is_null(), "{s:#}");
    let text = String::from_utf8_lossy(&host(&["status", path]).stdout).into_owned();
    assert!(text.contains("not running; produced: unknown"), "{text}");
    assert!(!text.contains("produced 0"), "{text}");
    assert_eq!(s["postgres"]["ok"], true);
    assert_eq!(s["kafka"]["ok"], true);
    assert_eq!(s["sinks"][0]["table_rows"], 12);
    assert_eq!(s["sinks"][0]["partitions"][0]["lag"], 0);
}

/// A table too large to count on every refresh gets PostgreSQL's estimate,
/// and both the JSON and the text say so; a small one beside it is counted.
#[test]
fn a_large_table_shows_an_estimate_and_says_so() {
    let topic = unique("status_big");
    let (big, small) = (unique("status_big_rows"), unique("status_small_rows"));
    let big_rows = host::ops::row_counts::EXACT_UP_TO + 20_000;
    let db = Db::connect();
    for (table, rows) in [(&big, big_rows), (&small, 50)] {
        db.execute(&format!(
            "CREATE TABLE \"{table}\" (message_id bigserial PRIMARY KEY, message_text text NOT NULL, \
             message_time timestamptz, offset_id bigint NOT NULL, partition_id bigint NOT NULL); \
             INSERT INTO \"{table}\" (message_text, offset_id, partition_id) \
             SELECT '{{}}', g, 0 FROM generate_series(1, {rows}) g; ANALYZE \"{table}\""
        ));
    }
    let path = SinkPipeline::new(&topic, &big, "json_row")
        // No host answers on this port: `host status` reads PostgreSQL itself.
        .extra(&format!(
            "[[sinks]]\nname = \"small\"\ntopic = \"{topic}\"\ntable = \"{small}\"\nmapper = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            common::plugin("json_row").display(),
            free_port()
        ))
        .write();
    let path = path.to_str().expect("utf-8");
    let out = host(&["status", path, "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sink = |name: &str| {
        s["sinks"]
            .as_array()
            .expect("sinks")
            .iter()
            .find(|k| k["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no sink {name} in {s:#}"))
    };
    let estimate = sink("rows");
    assert_eq!(estimate["table_rows_kind"], "estimate", "{estimate:#}");
    // ANALYZE of a table this size reads every page: the estimate is the count.
    let shown = estimate["table_rows"].as_i64().expect("rows");
    assert!(
        (shown - big_rows).abs() <= big_rows / 100,
        "estimate {shown} far from {big_rows}"
    );
    assert_eq!(sink("small")["table_rows"], 50);
    assert_eq!(sink("small")["table_rows_kind"], "exact");
    let text = String::from_utf8_lossy(&host(&["status", path]).stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.contains(&big) && l.contains(&format!("~{shown}"))),
        "{text}"
    );
    db.execute(&format!("DROP TABLE \"{big}\"; DROP TABLE \"{small}\""));
}
