//! Kafka can lose the offset a sink stored: the topic is deleted and created
//! again under a running sink, or retention deletes messages before they are
//! stored. The sink never goes on silently: by default it stops and says
//! why, with the statement to run, and stores nothing past the loss; with
//! `on_lost_offsets = "skip"` it goes on, and counts what it skipped.
use crate::support::{audit, common, offsets, ops};

use audit::assert_says;
use common::{Db, SinkPipeline, create_topic, host_within, produce_raw, unique, wait_for};
use offsets::{Host, delete_records, recreate_topic};
use ops::{free_port, get, sample};
use std::time::Duration;

/// Produces `{"gen": generation, "n": i}` to partition 0.
fn produce(topic: &str, generation: &str, range: std::ops::Range<i64>) {
    let payloads: Vec<Option<Vec<u8>>> = range
        .map(|i| Some(format!("{{\"gen\": \"{generation}\", \"n\": {i}}}").into_bytes()))
        .collect();
    produce_raw(topic, &payloads);
}

/// (offset, message text) of every row, in offset order.
fn rows(db: &Db, table: &str) -> Vec<(i64, String)> {
    db.query(
        &format!("SELECT offset_id, message_text FROM \"{table}\" ORDER BY offset_id, message_text"),
        &[],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn stored_next(db: &Db, table: &str) -> Option<i64> {
    db.query(
        "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1 AND partition = 0",
        &[&table],
    )
    .first()
    .map(|r| r.get(0))
}

/// A sink that has stored the five "old" messages of a fresh topic.
fn sink_with_five_stored(prefix: &str, pipeline: SinkPipeline, topic: &str, table: &str) -> (Db, Host, String) {
    create_topic(topic, 1);
    produce(topic, "old", 0..5);
    let path = pipeline.write();
    let path = path.to_str().expect("utf-8").to_string();
    let host = Host::consume(&path, topic);
    let db = Db::connect();
    wait_for(&format!("{prefix}: five rows stored"), Duration::from_secs(120), || {
        stored_next(&db, table) == Some(5)
    });
    (db, host, path)
}

#[test]
fn a_topic_created_again_under_a_running_sink_stops_it_and_nothing_is_skipped() {
    let (topic, table) = (unique("lost_stop"), unique("lost_stop_rows"));
    let pipeline = SinkPipeline::new(&topic, &table, "json_row");
    let (db, mut host, _) = sink_with_five_stored("stop", pipeline, &topic, &table);

    recreate_topic(&topic);
    produce(&topic, "new", 0..2);
    let (ok, log) = host.exit_within(Duration::from_secs(120));
    assert!(!ok, "the sink must stop:\n{log}");
    assert_says(
        &log,
        &[
            &format!("Kafka no longer holds the offsets PostgreSQL stored for topic {topic}"),
            &format!("{topic}/0: stored next offset 5, Kafka's log starts at 0 and ends at"),
            "created again",
            "AND partition IN (0);",
            "on_lost_offsets",
        ],
    );
    // Nothing skipped: the new messages 0 and 1 are not taken for stored
    // ones, the stored offset did not move.
    let stored = rows(&db, &table);
    assert_eq!(stored.len(), 5, "{stored:?}");
    assert!(stored.iter().all(|(_, text)| text.contains("old")), "{stored:?}");
    assert_eq!(stored_next(&db, &table), Some(5));
}

#[test]
fn with_skip_a_topic_created_again_goes_on_and_counts_what_it_skipped() {
    let (topic, table) = (unique("lost_skip"), unique("lost_skip_rows"));
    let port = free_port();
    let pipeline = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line("on_lost_offsets = \"skip\"")
        .extra(&format!("[http]\nlisten = \"127.0.0.1:{port}\""));
    let (db, host, _) = sink_with_five_stored("skip", pipeline, &topic, &table);
    let skipped = || {
        get(port, "/metrics")
            .and_then(|(_, m)| sample(&m, r#"wasm_stream_sink_skipped_messages_total{sink="rows"}"#))
            .unwrap_or(0.0) as i64
    };

    recreate_topic(&topic);
    // Below the stored offset 5: skipped, and counted as they arrive.
    produce(&topic, "new", 0..2);
    wait_for("two messages counted as skipped", Duration::from_secs(120), || {
        skipped() == 2
    });
    // 2-4 are skipped too; from the stored offset on, the new messages land.
    produce(&topic, "new", 2..8);
    wait_for("the new messages 5-7 stored", Duration::from_secs(120), || {
        stored_next(&db, &table) == Some(8)
    });
    assert_eq!(skipped(), 5, "{}", host.log());
    let stored = rows(&db, &table);
    let new: Vec<i64> = stored
        .iter()
        .filter(|(_, t)| t.contains("new"))
        .map(|(o, _)| *o)
        .collect();
    assert_eq!(new, vec![5, 6, 7], "{stored:?}");
    assert_eq!(stored.len(), 8, "{stored:?}");
    assert_says(&host.log(), &["past the end of the topic"]);
}

#[test]
fn retention_past_the_stored_offset_stops_the_sink_or_is_skipped_and_counted() {
    let (topic, table) = (unique("lost_retention"), unique("lost_retention_rows"));
    create_topic(&topic, 1);
    produce(&topic, "old", 0..5);
    let stop = SinkPipeline::new(&topic, &table, "json_row").write();
    let stop = stop.to_str().expect("utf-8");
    let once = |path: &str| {
        host_within(
            &["consume", path, "--topic", &topic, "--once", "--quiet"],
            Duration::from_secs(120),
        )
    };
    assert!(once(stop).status.success());
    let db = Db::connect();
    assert_eq!(stored_next(&db, &table), Some(5));

    // Messages 5-9 arrive while the sink is down; retention takes 0-7.
    produce(&topic, "old", 5..10);
    delete_records(&topic, 0, 8);
    let out = once(stop);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the sink must stop: {stderr}");
    assert_says(
        &stderr,
        &[
            &format!("{topic}/0: stored next offset 5, Kafka's log starts at 8 and ends at 10"),
            "retention",
            "SET next_offset = 8 WHERE",
            "AND partition = 0 AND next_offset = 5;",
        ],
    );
    assert_eq!(rows(&db, &table).len(), 5, "nothing stored past the loss");
    assert_eq!(stored_next(&db, &table), Some(5));

    // With "skip": on from the log's start, the three lost messages counted
    // (read from the warning: a `--once` run ends before /metrics can be read).
    let skip = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line("on_lost_offsets = \"skip\"")
        .write();
    let out = once(skip.to_str().expect("utf-8"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_says(&stderr, &["skipped=3", "retention"]);
    let offsets: Vec<i64> = rows(&db, &table).into_iter().map(|(o, _)| o).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 8, 9]);
    assert_eq!(stored_next(&db, &table), Some(10));
}
