//! `host sink pause|resume` while two `host run` processes write a sink fed
//! by a steady stream: within 5 s of the pause the table stops growing and
//! `host status` says "paused"; the pause outlives a restart of the
//! processes; after the resume every message is stored exactly once.
use crate::support::{common, ops, rewind};

use common::{
    Db, SinkPipeline, assert_each_offset_once, create_topic, host, produce_keyed, topic_size, unique, wait_for,
};
use rewind::{count, member, settled, sink_ok};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Produces a few messages to each partition every 50 ms until stopped.
fn stream(topic: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<common::Keyed> = (0..4)
                .map(|n| {
                    i += 1;
                    (
                        n % 2,
                        format!("k{i}").into_bytes(),
                        Some(format!("{{\"i\": {i}}}").into_bytes()),
                    )
                })
                .collect();
            produce_keyed(&topic, &batch);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Whether the table's row count holds still for `quiet`.
fn still(db: &Db, table: &str, quiet: Duration) -> bool {
    let before = count(db, table);
    std::thread::sleep(quiet);
    count(db, table) == before
}

/// `host status --json` says the sink is paused (the state is read from PostgreSQL).
fn status_paused(path: &str) -> bool {
    let out = host(&["status", path, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    status["sinks"][0]["paused"].as_bool().expect("paused is a boolean")
}

#[test]
fn a_paused_sink_writes_nothing_across_a_restart_and_resumes_without_loss() {
    let topic = unique("pause");
    let table = unique("pause_rows");
    create_topic(&topic, 2);
    // The first member to bind serves /status and /metrics (the other
    // logs the port in use and runs on).
    let port = ops::free_port();
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .partitions(2)
        .batch_size(20)
        .sink_line("flush_interval_ms = 50")
        .extra(&format!("[http]\nlisten = \"127.0.0.1:{port}\""))
        .write();
    let path = path.to_str().expect("utf-8 path");
    let db = Db::connect();
    let (a, b) = (unique("pause_a"), unique("pause_b"));
    let members = vec![member(path, &a), member(path, &b)];
    let stop = Arc::new(AtomicBool::new(false));
    let producer = stream(topic.clone(), stop.clone());
    wait_for("rows landing", Duration::from_secs(60), || count(&db, &table) > 40);
    assert!(!status_paused(path));

    let out = sink_ok(&["pause", path, "--sink", "rows"]);
    assert!(out.contains("paused"), "{out}");
    // Stopped within 5 s: from then on, the count holds for 3 s.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        still(&db, &table, Duration::from_secs(3)),
        "rows still grow after the pause"
    );
    assert!(status_paused(path), "host status says paused");
    let (_, metrics) = ops::get(port, "/metrics").expect("/metrics answers");
    assert!(
        metrics.contains("wasm_stream_sink_paused{sink=\"rows\"} 1"),
        "the paused gauge is 1:\n{metrics}"
    );
    let (_, status) = ops::get(port, "/status").expect("/status answers");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["sinks"][0]["paused"], true, "{status}");
    assert!(count(&db, &table) < topic_size(&topic), "the stream went on meanwhile");

    // Restarted processes stay paused.
    for running in members {
        running.terminate();
    }
    let members = vec![member(path, &a), member(path, &b)];
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        still(&db, &table, Duration::from_secs(3)),
        "a restarted process wrote while paused"
    );

    let out = sink_ok(&["resume", path, "--sink", "rows"]);
    assert!(out.contains("resumed"), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer");
    let total = topic_size(&topic);
    wait_for("every message stored after the resume", Duration::from_secs(90), || {
        settled(&db, &table) == total
    });
    assert!(!status_paused(path));
    let offsets = db.offsets(&table);
    for p in 0..2 {
        let end: i64 = db.query(
            "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1 AND partition = $2",
            &[&table, &p],
        )[0]
        .get(0);
        assert_each_offset_once(&offsets, i64::from(p), end);
    }
    for running in members {
        running.terminate();
    }
}
