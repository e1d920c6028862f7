//! `host run` serves /metrics, health and /status on `[http] listen`: the
//! counters agree with the rows PostgreSQL holds, readiness turns true once
//! the sink is connected and assigned, and /status reports the table's rows.
use crate::support::{common, ops};

use common::{Db, Running, SinkPipeline, unique, wait_for, write_pipeline};
use ops::{count_rows, free_port, get, sample, wait_for_code};
use std::time::Duration;

#[test]
fn metrics_counters_match_the_rows_in_postgres() {
    let topic = unique("metrics");
    let table = unique("metrics_rows");
    let port = free_port();
    let count = 60;
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .partitions(2)
        .batch_size(7)
        .generator("gen", count, 0)
        .extra(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[audit]\ninterval_ms = 0"
        ))
        .write();
    let host = Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]);

    let live = wait_for_code(port, "/health/live", 200, Duration::from_secs(60));
    assert!(live.contains("\"live\": true"), "{live}");
    let db = Db::connect();
    wait_for("all rows stored", Duration::from_secs(120), || {
        count_rows(&db, &table) == count
    });
    let ready = wait_for_code(port, "/health/ready", 200, Duration::from_secs(30));
    assert!(ready.contains("\"ready\": true"), "{ready}");

    let (code, metrics) = get(port, "/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    let rows = sample(&metrics, r#"wasm_stream_sink_rows_total{sink="rows"}"#).expect("rows counter");
    let messages = sample(&metrics, r#"wasm_stream_sink_messages_total{sink="rows"}"#).expect("messages counter");
    let dead = sample(&metrics, r#"wasm_stream_sink_dead_letters_total{sink="rows"}"#).expect("dead letters counter");
    assert_eq!(
        rows as i64,
        count_rows(&db, &table),
        "rows counter against the table\n{metrics}"
    );
    assert_eq!(messages as i64, count);
    assert_eq!(dead, 0.0);
    // The generator counts acknowledgements as its producer reads them
    // (every 100 ms when idle), which can come after the sink has stored the
    // rows: the counter reaches the count soon after, not at once.
    let generator_counter = || {
        get(port, "/metrics")
            .and_then(|(_, m): (u16, String)| sample(&m, r#"wasm_stream_generator_messages_total{generator="gen"}"#))
    };
    wait_for(
        "the generator counter reaches the count",
        Duration::from_secs(10),
        || generator_counter() == Some(count as f64),
    );
    // The stored-offset gauges add up to what the offsets table holds.
    let stored: i64 = db.query(
        "SELECT coalesce(sum(next_offset), 0)::int8 FROM wasm_stream_offsets WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0);
    let gauges: f64 = (0..2)
        .filter_map(|p| {
            sample(
                &metrics,
                &format!(r#"wasm_stream_sink_stored_offset{{sink="rows",partition="{p}"}}"#),
            )
        })
        .sum();
    assert_eq!(gauges as i64, stored);
    assert_eq!(stored, count);
    for family in [
        "wasm_stream_sink_batch_size_bucket",
        "wasm_stream_sink_write_seconds_bucket",
        "wasm_stream_plugin_call_seconds_bucket",
        "wasm_stream_plugin_calls_total",
        "wasm_stream_plugin_memory_high_water_bytes{plugin=\"sink rows\"}",
        "wasm_stream_process_start_time_seconds",
        "wasm_stream_build_info",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }

    // /status: the rows PostgreSQL holds, and lag 0 once the collector sampled the end offsets.
    wait_for("status shows every row with no lag", Duration::from_secs(30), || {
        let Some((200, body)) = get(port, "/status") else {
            return false;
        };
        let s: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
        let sink = &s["sinks"][0];
        sink["table_rows"] == count
            && sink["partitions"]
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["lag"] == 0))
    });
    host.terminate();
}

#[test]
fn unreachable_postgres_makes_the_host_not_ready_with_the_cause() {
    let topic = unique("unready");
    let port = free_port();
    let path = SinkPipeline::new(&topic, &unique("unready_rows"), "json_row")
        .extra(&format!("[http]\nlisten = \"127.0.0.1:{port}\""))
        .write();
    // Point PostgreSQL at a port where nothing listens.
    let text = std::fs::read_to_string(&path).expect("read");
    let dead_port = free_port();
    std::fs::write(&path, text.replace("localhost:5432", &format!("localhost:{dead_port}"))).expect("write");
    let mut host = Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]);
    wait_for(
        "not ready naming PostgreSQL",
        Duration::from_secs(60),
        || matches!(get(port, "/health/ready"), Some((503, body)) if body.contains("PostgreSQL unreachable") && body.contains(&format!("localhost:{dead_port}"))),
    );
    // Still serving, still running.
    assert_eq!(get(port, "/health/live").map(|r| r.0), Some(200));
    // It retries PostgreSQL until stopped; nothing to finish.
    let _ = host.child.kill();
    let _ = host.child.wait();
}

#[test]
fn a_port_in_use_leaves_the_pipeline_running() {
    let topic = unique("busy");
    let table = unique("busy_rows");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .generator("gen", 5, 0)
        .extra(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[audit]\ninterval_ms = 0"
        ))
        .write();
    let out = common::host_ok(&["run", path.to_str().expect("utf-8"), "--once", "--no-watch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics and status on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert_eq!(count_rows(&Db::connect(), &table), 5);
    drop(busy);
}

#[test]
fn a_malformed_listen_is_located_in_the_file() {
    let path = write_pipeline("[http]\nlisten = \"localhost:nine\"\n");
    let out = common::host(&["validate", path.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipeline.toml:"), "{stderr}");
    assert!(
        stderr.contains("http.listen \"localhost:nine\" is not an IP address and port"),
        "{stderr}"
    );
}

/// Sends `request` as is on a new connection and returns what comes back
/// until the server closes it (or 20 s pass).
fn raw(port: u16, request: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    // A server that answers early and closes may reset the rest of the send.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_code(reply: &str) -> Option<u16> {
    reply.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_server_refuses_foreign_hosts_oversize_requests_and_too_many_connections() {
    let port = free_port();
    let path = SinkPipeline::new(&unique("guard"), &unique("guard_rows"), "json_row")
        .extra(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nallowed_hosts = [\"status.example.com\"]\n\n[audit]\ninterval_ms = 0"
        ))
        .write();
    // Killed when the test ends, pass or fail.
    let _host = KillOnDrop(Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]));
    wait_for_code(port, "/health/live", 200, Duration::from_secs(60));
    let get_as = |host: &str, path: &str| {
        raw(
            port,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };

    // DNS rebinding: a page of a foreign site whose name now points here.
    let foreign = get_as(&format!("evil.example.net:{port}"), "/status");
    assert_eq!(status_code(&foreign), Some(421), "{foreign}");
    assert!(foreign.contains("allowed_hosts"), "{foreign}");
    assert!(!foreign.contains("sinks"), "no status leaks: {foreign}");
    for allowed in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "status.example.com".to_string(),
    ] {
        let ok = get_as(&allowed, "/status");
        assert_eq!(status_code(&ok), Some(200), "Host {allowed}: {ok}");
        assert!(ok.contains("\"sinks\""), "{ok}");
    }

    // A request head far beyond what a status probe needs.
    let huge = format!(
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let reply = raw(port, huge.as_bytes());
    assert_eq!(status_code(&reply), Some(431), "{reply}");
    // A body where none belongs.
    let reply = raw(
        port,
        b"POST /status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_code(&reply), Some(413), "{reply}");

    // Connections that send nothing hold every slot: the next one is turned away.
    let idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let busy = get_as("127.0.0.1", "/health/live");
    assert_eq!(status_code(&busy), Some(503), "{busy}");
    drop(idle);
    wait_for_code(port, "/health/live", 200, Duration::from_secs(10));
}

struct KillOnDrop(Running);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}
