//! The status page stays true through reloads, read in a real headless
//! Chromium (the DOM after its script rendered `/status`) and compared with
//! PostgreSQL, Kafka and `/metrics`:
//!
//! - from the start, every plugin shows (the generator, both mappers and the
//!   check) with its world, contract version and the hash of its file;
//! - a mapper that traps shows its traps (as `/metrics` counts them) and its
//!   dead letters, and the sink's most frequent reasons with their counts;
//! - a reload that switches a sink's mapper and table shows the new table,
//!   its rows, stored offset and lag; a sink added appears, one removed
//!   disappears with its plugin; the audit judges the new table;
//! - a generator pointed at a file of the wrong world, and a truncated mapper
//!   file, show as the plugin's last reload error (no `-: ` prefix), which
//!   clears once the good bytes are back.
use crate::support::{common, ops};

use common::{Db, Running, plugin, produce_raw, replace_atomically, topic_size, unique, wait_for, write_pipeline};
use ops::{attr, attrs, count_rows, dom_row, free_port, get, headless, sample, wait_for_code};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn hash(path: &Path) -> String {
    host::plugins::content_hash(&std::fs::read(path).expect("read plugin"))
}

fn status(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/status").expect("/status answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

fn sink_json(s: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    s["sinks"].as_array()?.iter().find(|k| k["name"] == name).cloned()
}

fn plugin_json(s: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    s["plugins"].as_array()?.iter().find(|p| p["name"] == name).cloned()
}

/// `/status` shows the sink on `table` with its `rows` and every one of the
/// topic's `messages` stored (lag 0).
fn caught_up(port: u16, sink: &str, table: &str, rows: i64, messages: i64) -> bool {
    sink_json(&status(port), sink).is_some_and(|k| {
        k["table"] == table
            && k["table_rows"] == rows
            && k["partitions"][0]["lag"] == 0
            && k["partitions"][0]["end"] == messages
    })
}

/// Waits for `condition`, showing the last `/status` when it does not come.
fn wait_status(port: u16, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; /status:\n{:#}",
            status(port)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stored_offset(db: &Db, table: &str) -> i64 {
    db.query(
        "SELECT COALESCE(MAX(next_offset), 0) FROM wasm_stream_offsets WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0)
}

/// The sink's reasons by first line, lines that differ only in numbers (an
/// offset) counted together, most frequent first.
fn dead_letter_reasons(db: &Db, sink: &str) -> Vec<(String, i64)> {
    db.query(
        "SELECT regexp_replace(left(split_part(reason, E'\\n', 1), 300), '[0-9]+', 'N', 'g'), count(*) \
         FROM wasm_stream_dead_letters WHERE sink = $1 GROUP BY 1 ORDER BY 2 DESC, 1",
        &[&sink],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The sink's row on the page agrees with PostgreSQL and Kafka.
fn assert_sink_row(dom: &str, db: &Db, sink: &str, topic: &str, table: &str) {
    let row = dom_row(dom, "data-sink", sink).unwrap_or_else(|| panic!("no row for sink {sink}:\n{dom}"));
    assert_eq!(attr(&row, "data-table").as_deref(), Some(table), "{row}");
    assert_eq!(attr(&row, "data-running").as_deref(), Some("true"), "{row}");
    let rows = count_rows(db, table);
    assert_eq!(
        attr(&row, "data-rows"),
        Some(rows.to_string()),
        "rows of {table}: {row}"
    );
    let (stored, end) = (stored_offset(db, table), topic_size(topic));
    assert_eq!(
        attr(&row, "data-stored"),
        Some(stored.to_string()),
        "stored offset: {row}"
    );
    assert_eq!(attr(&row, "data-end"), Some(end.to_string()), "end offset: {row}");
    assert_eq!(attr(&row, "data-lag"), Some((end - stored).to_string()), "lag: {row}");
}

/// The plugin's row shows the file's world, contract and hash, loaded.
fn assert_plugin_row(dom: &str, name: &str, world: &str, file: &Path) -> String {
    let row = dom_row(dom, "data-plugin", name).unwrap_or_else(|| panic!("no row for plugin {name}:\n{dom}"));
    assert_eq!(attr(&row, "data-world").as_deref(), Some(world), "{row}");
    assert_eq!(attr(&row, "data-contract").as_deref(), Some("0.3.0"), "{row}");
    assert_eq!(attr(&row, "data-hash"), Some(hash(file)), "{row}");
    assert_eq!(attr(&row, "data-path"), Some(file.display().to_string()), "{row}");
    assert_eq!(attr(&row, "data-loaded").as_deref(), Some("true"), "{row}");
    row
}

fn copy(from: &str, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(plugin(from), &to).expect("copy plugin");
    to
}

#[test]
fn the_page_follows_every_reload() {
    let (topic, traps_topic, ticks) = (unique("follow"), unique("follow_traps"), unique("follow_ticks"));
    let (a, b, c) = (unique("fa"), unique("fb"), unique("fc"));
    let (a1, a2, b_table, c_table) = (
        unique("follow_a1"),
        unique("follow_a2"),
        unique("follow_b"),
        unique("follow_c"),
    );
    let dir = std::env::temp_dir().join(unique("follow_plugins"));
    std::fs::create_dir_all(&dir).expect("dir");
    let ticker = copy("langs", &dir, "ticker.wasm");
    let a_mapper = copy("json_row", &dir, "a.wasm");
    let hostile = copy("hostile_mapper", &dir, "hostile.wasm");
    let c_mapper = copy("json_row", &dir, "c.wasm");
    let v1 = copy("versioned_mapper_v1", &dir, "v1.wasm");
    let wrong = copy("json_row", &dir, "wrong_world.wasm");
    let check = plugin("sync_audit");
    let port = free_port();
    let head = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[audit]\ninterval_ms = 1500\n\n\
         [[checks]]\nname = \"sync\"\nplugin = \"{}\"\n\n\
         [[topics]]\nname = \"{topic}\"\n\n[[topics]]\nname = \"{traps_topic}\"\n\n[[topics]]\nname = \"{ticks}\"\n\n",
        check.display()
    );
    let generator = |file: &Path| {
        format!(
            "[[generators]]\nname = \"ticker\"\ntopic = \"{ticks}\"\nplugin = \"{}\"\ninterval_ms = 500\n\n",
            file.display()
        )
    };
    let sink = |name: &str, topic: &str, table: &str, mapper: &Path| {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\nflush_interval_ms = 50\n\
             limits = {{ call_timeout_ms = 500 }}\n\n",
            mapper.display()
        )
    };
    let path = write_pipeline(&format!(
        "{head}{}{}{}",
        generator(&ticker),
        sink(&a, &topic, &a1, &a_mapper),
        sink(&b, &traps_topic, &b_table, &hostile)
    ));
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);
    wait_for_code(port, "/health/ready", 200, WAIT);
    let json = |i: i64| Some(format!("{{\"n\": {i}}}").into_bytes());
    produce_raw(&topic, &(0..30).map(json).collect::<Vec<_>>());
    // Three traps and one call that never ends (stopped at its deadline).
    let hostile_payloads = ["fine-1", "trap", "trap", "fine-2", "naps", "trap"];
    produce_raw(
        &traps_topic,
        &hostile_payloads
            .iter()
            .map(|p| Some(p.as_bytes().to_vec()))
            .collect::<Vec<_>>(),
    );
    let db = Db::connect();
    wait_status(port, "both sinks caught up", || {
        caught_up(port, &a, &a1, 30, 30) && caught_up(port, &b, &b_table, 2, 6)
    });
    wait_for("the check loaded", WAIT, || {
        plugin_json(&status(port), "check sync").is_some_and(|p| !p["loaded_at_ms"].is_null())
    });

    // Items 1, 2 and 4 at the start.
    let url = format!("http://127.0.0.1:{port}/");
    let dom = headless(&url, &["--dump-dom"]);
    assert!(dom.contains(r#"data-loaded="true""#), "the page did not render:\n{dom}");
    assert_sink_row(&dom, &db, &a, &topic, &a1);
    assert_sink_row(&dom, &db, &b, &traps_topic, &b_table);
    assert_plugin_row(&dom, "generator ticker", "generator", &ticker);
    assert_plugin_row(&dom, &format!("sink {a}"), "mapper", &a_mapper);
    let b_plugin = assert_plugin_row(&dom, &format!("sink {b}"), "mapper", &hostile);
    assert_plugin_row(&dom, "check sync", "check", &check);
    let metrics = get(port, "/metrics").expect("/metrics").1;
    let traps = sample(
        &metrics,
        &format!("wasm_stream_plugin_traps_total{{plugin=\"sink {b}\"}}"),
    )
    .expect("traps metric");
    assert!(traps >= 3.0, "three messages trapped:\n{metrics}");
    assert_eq!(attr(&b_plugin, "data-traps"), Some(format!("{traps}")), "{b_plugin}");
    let timeouts = sample(
        &metrics,
        &format!("wasm_stream_plugin_timeouts_total{{plugin=\"sink {b}\"}}"),
    )
    .expect("timeouts metric");
    assert!(timeouts >= 1.0, "one call ran out of time:\n{metrics}");
    assert_eq!(
        attr(&b_plugin, "data-timeouts"),
        Some(format!("{timeouts}")),
        "{b_plugin}"
    );
    let letters = db.dead_letters(&traps_topic);
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert_eq!(attr(&b_plugin, "data-dead-letters").as_deref(), Some("4"), "{b_plugin}");
    let b_row = dom_row(&dom, "data-sink", &b).expect("sink b");
    assert_eq!(attr(&b_row, "data-dead-letters").as_deref(), Some("4"), "{b_row}");
    assert!(b_row.contains("<details"), "the reasons are one click away: {b_row}");
    let expected: Vec<String> = dead_letter_reasons(&db, &b)
        .into_iter()
        .take(5)
        .map(|(_, n)| n.to_string())
        .collect();
    assert_eq!(expected, ["3", "1"], "a trap reason and a deadline reason");
    assert_eq!(attrs(&b_row, "data-count"), expected, "{b_row}");

    // A reload: sink a switches mapper and table, b goes, c comes, and the
    // ticker is pointed at a mapper (the wrong world).
    // The ticker's part is refused, so the reload applies partly.
    let reloads = |log: String| {
        log.matches("pipeline file reloaded").count() + log.matches("pipeline file partly applied").count()
    };
    let saves = reloads(host.log());
    let text = std::fs::read_to_string(&path).expect("read pipeline");
    let connections = &text[..text.find("[http]").expect("the head follows the connections")];
    replace_atomically(
        &path,
        format!(
            "{connections}{head}{}{}{}",
            generator(&wrong),
            sink(&a, &topic, &a2, &v1),
            sink(&c, &topic, &c_table, &c_mapper)
        )
        .as_bytes(),
    );
    wait_for("the reload applied", WAIT, || reloads(host.log()) > saves);
    produce_raw(&topic, &(30..40).map(json).collect::<Vec<_>>());
    wait_status(port, "both sinks caught up after the reload", || {
        caught_up(port, &a, &a2, 40, 40) && caught_up(port, &c, &c_table, 40, 40)
    });
    // Two sinks on the topic now: sync-audit names the sink too.
    let subject = format!("{a}:{topic}/0");
    wait_status(port, "an audit round on the new table", || {
        status(port)["findings"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["subject"] == subject.as_str() && f["message"] == "in sync at offset 40")
        })
    });
    let dom = headless(&url, &["--dump-dom"]);
    assert_sink_row(&dom, &db, &a, &topic, &a2);
    assert_sink_row(&dom, &db, &c, &topic, &c_table);
    assert_eq!(count_rows(&db, &a1), 30, "the old table is left as it was");
    assert!(
        dom_row(&dom, "data-sink", &b).is_none(),
        "the removed sink is gone:\n{dom}"
    );
    assert!(dom_row(&dom, "data-plugin", &format!("sink {b}")).is_none(), "{dom}");
    assert_plugin_row(&dom, &format!("sink {a}"), "mapper", &v1);
    assert_plugin_row(&dom, &format!("sink {c}"), "mapper", &c_mapper);
    let at = dom
        .find(&format!("<td>{subject}</td>"))
        .expect("the audit row of sink a");
    assert!(
        dom[at..]
            .split("</tr>")
            .next()
            .is_some_and(|r| r.contains("in sync at offset 40")),
        "the audit row agrees: {}",
        &dom[at..]
    );
    // The ticker keeps its plugin and says why the new one was refused.
    let ticker_row = assert_plugin_row(&dom, "generator ticker", "generator", &ticker);
    let error = attr(&ticker_row, "data-reload-error").expect("reload error");
    assert!(error.contains("wrong_world.wasm"), "{ticker_row}");
    assert!(ticker_row.contains(r#"class="reload-error-at">at "#), "{ticker_row}");

    // A truncated mapper file, then its good bytes back.
    let good = std::fs::read(&c_mapper).expect("read c");
    replace_atomically(&c_mapper, &good[..good.len() / 2]);
    let c_name = format!("sink {c}");
    wait_for("the truncated file refused", WAIT, || {
        plugin_json(&status(port), &c_name).is_some_and(|p| !p["last_reload_error"].is_null())
    });
    let dom = headless(&url, &["--dump-dom"]);
    let row = dom_row(&dom, "data-plugin", &c_name).expect("plugin c");
    let error = attr(&row, "data-reload-error").expect("reload error");
    assert!(!error.is_empty() && !error.starts_with("-: "), "{row}");
    assert!(error.contains("c.wasm"), "{row}");
    assert!(
        row.contains(&format!("(file hash {})", hash(&c_mapper))),
        "the refused bytes' hash: {row}"
    );
    assert_eq!(
        attr(&row, "data-hash"),
        Some(host::plugins::content_hash(&good)),
        "still the good one runs"
    );
    replace_atomically(&c_mapper, &good);
    wait_for("the error cleared", WAIT, || {
        plugin_json(&status(port), &c_name).is_some_and(|p| p["last_reload_error"].is_null())
    });
    let dom = headless(&url, &["--dump-dom"]);
    let row = assert_plugin_row(&dom, &c_name, "mapper", &c_mapper);
    assert_eq!(attr(&row, "data-reload-error").as_deref(), Some(""), "{row}");

    // A mapper that compiles but whose columns do not fit the table: the sink
    // keeps the old one, and the page says so (not the new hash as running).
    let misfit = std::fs::read(plugin("hostile_mapper")).expect("read hostile");
    replace_atomically(&c_mapper, &misfit);
    // A sink swaps its mapper at a batch boundary: give it a batch.
    wait_for("the misfit refused by the sink", WAIT, || {
        produce_raw(&topic, &[json(40)]);
        std::thread::sleep(Duration::from_millis(500));
        plugin_json(&status(port), &c_name).is_some_and(|p| !p["last_reload_error"].is_null())
    });
    let dom = headless(&url, &["--dump-dom"]);
    let row = dom_row(&dom, "data-plugin", &c_name).expect("plugin c");
    assert_eq!(
        attr(&row, "data-hash"),
        Some(host::plugins::content_hash(&good)),
        "the old mapper runs: {row}"
    );
    assert!(!attr(&row, "data-reload-error").unwrap_or_default().is_empty(), "{row}");
    replace_atomically(&c_mapper, &good);
    wait_for("the good mapper back", WAIT, || {
        produce_raw(&topic, &[json(41)]);
        std::thread::sleep(Duration::from_millis(500));
        plugin_json(&status(port), &c_name).is_some_and(|p| p["last_reload_error"].is_null())
    });
    host.terminate();
    for table in [&a1, &a2, &b_table, &c_table] {
        db.execute(&format!("DROP TABLE IF EXISTS \"{table}\""));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `host consume` serves the page too: its mapper shows from the start, and
/// the check it does not run shows as not loaded, saying why.
#[test]
fn consume_shows_its_mapper_from_the_start() {
    let (topic, table, name) = (unique("consume_page"), unique("consume_page_rows"), unique("cp"));
    let port = free_port();
    let mapper = plugin("json_row");
    let check = plugin("sync_audit");
    let path = write_pipeline(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[[checks]]\nname = \"sync\"\nplugin = \"{}\"\n\n\
         [[topics]]\nname = \"{topic}\"\n\n\
         [[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\nflush_interval_ms = 50\n",
        check.display(),
        mapper.display()
    ));
    let host = Running::start(&["consume", path.to_str().expect("utf-8"), "--topic", &topic]);
    wait_for_code(port, "/health/ready", 200, WAIT);
    produce_raw(
        &topic,
        &(0..5)
            .map(|i| Some(format!("{{\"n\": {i}}}").into_bytes()))
            .collect::<Vec<_>>(),
    );
    wait_status(port, "the sink caught up", || caught_up(port, &name, &table, 5, 5));
    let dom = headless(&format!("http://127.0.0.1:{port}/"), &["--dump-dom"]);
    let db = Db::connect();
    assert_sink_row(&dom, &db, &name, &topic, &table);
    assert_plugin_row(&dom, &format!("sink {name}"), "mapper", &mapper);
    let row = dom_row(&dom, "data-plugin", "check sync").unwrap_or_else(|| panic!("no check row:\n{dom}"));
    assert_eq!(attr(&row, "data-loaded").as_deref(), Some("false"), "{row}");
    assert_eq!(attr(&row, "data-hash"), Some(hash(&check)), "{row}");
    assert!(row.contains("not loaded: only the periodic audit"), "{row}");
    host.terminate();
    db.execute(&format!("DROP TABLE IF EXISTS \"{table}\""));
}
